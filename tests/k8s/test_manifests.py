"""The Kubernetes and Istio manifests: they render, validate against the Kubernetes (and CRD)
schemas, match what the README says, and every Envoy configuration inside them loads in real
Envoy with the real wasm. Run by `make test` (pytest, in the project's virtualenv)."""

import copy
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.environ.get("VENV", os.path.join(ROOT, ".venv"))
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(VENV, "bin", "envoy"))
KUBECTL = os.environ.get("KUBECTL", "kubectl")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "llm_gateway.wasm")
ISTIO = os.path.join(ROOT, "k8s", "istio")
ENV = {"OPENAI_API_KEY": "sk-test", "BACKUP_API_KEY": "sk-test", "OPENAI_BATCH_API_KEY": "sk-test",
       "ANTHROPIC_API_KEY": "sk-test", "GEMINI_API_KEY": "test-gemini"}


def kustomize(path):
    out = subprocess.run([KUBECTL, "kustomize", os.path.join(ROOT, path)], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- schema validation ----------------------------------------------------------------------

def crd_models():
    from cloudcoil.models.istio.extensions import v1alpha1 as ext
    from cloudcoil.models.istio.networking import v1 as net
    from cloudcoil.models.istio.networking import v1alpha3 as net3
    from cloudcoil.models.prometheus_operator import v1 as mon
    return {
        ("extensions.istio.io/v1alpha1", "WasmPlugin"): ext.WasmPlugin,
        ("networking.istio.io/v1alpha3", "EnvoyFilter"): net3.EnvoyFilter,
        ("networking.istio.io/v1", "ServiceEntry"): net.ServiceEntry,
        ("networking.istio.io/v1", "DestinationRule"): net.DestinationRule,
        ("networking.istio.io/v1", "Gateway"): net.Gateway,
        ("networking.istio.io/v1", "VirtualService"): net.VirtualService,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): mon.ServiceMonitor,
    }


def unknown_fields(given, parsed, path=""):
    """Keys in the manifest that the schema model did not take (the models ignore extras)."""
    out = []
    if isinstance(given, dict) and isinstance(parsed, dict):
        for k, v in given.items():
            if k not in parsed:
                out.append(f"{path}.{k}")
            else:
                out += unknown_fields(v, parsed[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(parsed, list):
        for i, (a, b) in enumerate(zip(given, parsed)):
            out += unknown_fields(a, b, f"{path}[{i}]")
    return out


# Fields whose schema is free-form (x-kubernetes-preserve-unknown-fields): any content is valid.
FREE_FORM = ("spec.pluginConfig", "spec.configPatches[0].patch.value", "spec.configPatches[1].patch.value")


def validate_builtin(docs):
    """kubernetes-validate, strict: the built-in kinds against the Kubernetes schemas."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    try:
        r = subprocess.run([os.path.join(VENV, "bin", "kubernetes-validate"), "--strict", "--quiet",
                            f.name], capture_output=True, text=True)
        assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        os.unlink(f.name)


def validate(docs):
    """kubernetes-validate (strict) for built-in kinds; the CRD schema models for the rest."""
    models = crd_models()
    validate_builtin([d for d in docs if (d["apiVersion"], d["kind"]) not in models])
    for d in docs:
        model = models.get((d["apiVersion"], d["kind"]))
        if not model:
            continue
        obj = model.model_validate(d)
        dumped = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
        bad = [u for u in unknown_fields(d, dumped) if not u.lstrip(".").startswith(FREE_FORM)]
        assert not bad, f"{d['kind']}/{d['metadata']['name']}: fields the schema does not know: {bad}"


@pytest.mark.parametrize("path", ["k8s/standalone/base", "k8s/standalone/overlays/example"])
def test_kustomize_renders_valid_manifests(path):
    docs = kustomize(path)
    validate(docs)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "ServiceMonitor"} <= kinds
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    assert not any("KEY" in k for cm in cms for k in cm.get("data", {})), "a key in a ConfigMap"
    for cm in cms:
        assert "sk-" not in json.dumps(cm), "something key-like in a ConfigMap"


def test_istio_manifests_validate():
    docs = []
    for name in sorted(os.listdir(ISTIO)):
        if name.endswith(".yaml") and name != "gateway-patch.yaml":
            docs += load(os.path.join(ISTIO, name))
    assert {d["kind"] for d in docs} >= {"WasmPlugin", "EnvoyFilter", "ServiceEntry", "DestinationRule",
                                        "Gateway", "VirtualService", "Secret"}
    validate(docs)


def test_gateway_patch_applies_to_an_ingress_gateway():
    gateway = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
               "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                        "template": {"metadata": {"labels": {"istio": "ingressgateway"}},
                                     "spec": {"containers": [{"name": "istio-proxy",
                                                              "image": "docker.io/istio/proxyv2:1.28.0"}]}}}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(gateway, f)
    try:
        out = subprocess.run([KUBECTL, "patch", "--local", "-f", f.name, "--type", "strategic",
                              "--patch-file", os.path.join(ISTIO, "gateway-patch.yaml"), "-o", "yaml"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    patched = yaml.safe_load(out)
    validate([patched])
    spec = patched["spec"]["template"]["spec"]
    proxy = spec["containers"][0]
    assert proxy["envFrom"][0]["secretRef"]["name"] == "llm-gateway-provider-keys"
    assert spec["initContainers"][0]["name"] == "llm-gateway-plugin"


def test_readme_shows_the_kustomize_output():
    docs = kustomize("k8s/standalone/overlays/example")
    rendered = sorted(f"{d['kind']}/{re.sub(r'-[a-z0-9]{10}$', '-<hash>', d['metadata']['name'])}"
                      for d in docs)
    readme = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- kustomize-output -->\n```\n(.*?)```", readme, re.S)
    assert m, "README has no kustomize output block"
    assert sorted(m.group(1).split()) == rendered


# --- Envoy configurations in real Envoy -------------------------------------------------------

def envoy_validate(bootstrap, workdir):
    path = os.path.join(workdir, "envoy.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(bootstrap, f)
    r = subprocess.run([ENVOY, "--mode", "validate", "-c", path, "--use-dynamic-base-id",
                        "--log-level", "info"], cwd=ROOT, env=dict(ENV, PATH=os.environ["PATH"]),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return r.stdout + r.stderr


def gateway_with_filter(wasm_config):
    """envoy/gateway.yaml with its filter replaced by `wasm_config` (a Wasm filter config)."""
    with open(os.path.join(ROOT, "envoy", "gateway.yaml")) as f:
        b = yaml.safe_load(f)
    cfg = copy.deepcopy(wasm_config)
    cfg["config"]["vm_config"]["code"] = {"local": {"filename": WASM}}
    hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"] = cfg
    return b


def test_shipped_standalone_bootstrap_loads():
    with tempfile.TemporaryDirectory() as wd:
        with open(os.path.join(ROOT, "envoy", "gateway.yaml")) as f:
            b = yaml.safe_load(f)
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = WASM
        log = envoy_validate(b, wd)
        assert "llm-gateway: configured" in log


def test_configmap_bootstrap_and_rules_load():
    docs = kustomize("k8s/standalone/overlays/example")
    cms = {d["metadata"]["name"].rsplit("-", 1)[0] if d["metadata"]["name"] != "llm-gateway-rules"
           else d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    bootstrap = yaml.safe_load(cms["llm-gateway-envoy"]["data"]["envoy.yaml"])
    rules = yaml.safe_load(cms["llm-gateway-rules"]["data"]["filter.yaml"])
    with tempfile.TemporaryDirectory() as wd:
        # The rules' filter config, as a static filter, so the plugin configuration runs.
        wasm = rules["resources"][0]["typed_config"]
        log = envoy_validate(gateway_with_filter(wasm), wd)
        assert "llm-gateway: configured 1 providers" in log, log[-2000:]
        # The bootstrap itself, with the rules file where it expects it.
        rules_dir = os.path.join(wd, "rules")
        os.makedirs(rules_dir)
        wasm["config"]["vm_config"]["code"]["local"]["filename"] = WASM
        with open(os.path.join(rules_dir, "filter.yaml"), "w") as f:
            yaml.safe_dump(rules, f)
        hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        src = hcm["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"]
        src["path"] = os.path.join(rules_dir, "filter.yaml")
        src["watched_directory"]["path"] = rules_dir
        envoy_validate(bootstrap, wd)


def test_envoyfilter_filter_config_loads():
    ef = load(os.path.join(ISTIO, "envoyfilter.yaml"))[0]
    ext = next(p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG")
    wasm = ext["patch"]["value"]["typed_config"]
    assert wasm["config"]["allow_on_headers_stop_iteration"] is True
    with tempfile.TemporaryDirectory() as wd:
        log = envoy_validate(gateway_with_filter(wasm), wd)
        assert "llm-gateway: configured" in log


def test_wasmplugin_plugin_config_loads():
    wp = load(os.path.join(ISTIO, "wasmplugin.yaml"))[0]
    plugin_config = wp["spec"]["pluginConfig"]
    env_keys = [e["name"] for e in wp["spec"]["vmConfig"]["env"]]
    wasm = {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": "llm_gateway", "root_id": "llm_gateway", "failure_policy": "FAIL_CLOSED",
                       "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                     "environment_variables": {"host_env_keys": env_keys}, "code": {}},
                       "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                         "value": json.dumps(plugin_config)}}}
    with tempfile.TemporaryDirectory() as wd:
        log = envoy_validate(gateway_with_filter(wasm), wd)
        assert "llm-gateway: configured 2 providers" in log


# --- the plugin image -------------------------------------------------------------------------

def test_oci_image_holds_the_plugin():
    with tempfile.TemporaryDirectory() as wd:
        out = os.path.join(wd, "plugin-image")
        subprocess.run(["python3", os.path.join(ROOT, "k8s", "plugin-image", "build-oci.py"), WASM, out],
                       check=True, capture_output=True)
        blob = lambda d: open(os.path.join(out, "blobs", "sha256", d.split(":")[1]), "rb").read()
        index = json.load(open(os.path.join(out, "index.json")))
        manifest_bytes = blob(index["manifests"][0]["digest"])
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == index["manifests"][0]["digest"]
        manifest = json.loads(manifest_bytes)
        layer = blob(manifest["layers"][0]["digest"])
        assert "sha256:" + hashlib.sha256(layer).hexdigest() == manifest["layers"][0]["digest"]
        config = json.loads(blob(manifest["config"]["digest"]))
        import gzip
        raw = gzip.decompress(layer)
        assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            assert t.getnames() == ["plugin.wasm"]
            assert t.extractfile("plugin.wasm").read() == open(WASM, "rb").read()
        # Reproducible: the same input gives the same archive.
        first = open(out + ".tar", "rb").read()
        subprocess.run(["python3", os.path.join(ROOT, "k8s", "plugin-image", "build-oci.py"), WASM, out],
                       check=True, capture_output=True)
        assert open(out + ".tar", "rb").read() == first
