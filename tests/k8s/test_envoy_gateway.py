"""The Envoy Gateway manifests (k8s/envoy-gateway): every resource validates strictly against the
published CRD schema of its kind (structure, unknown fields, values, and its CEL rules) (Envoy Gateway v1.9.0 and Gateway API v1.6.1, standard channel,
vendored in tests/k8s/schemas/envoy-gateway) or, for built-in kinds, against the Kubernetes
schemas; the resources agree with each other; and the Envoy configuration they produce, built
the way Envoy Gateway's translator builds it, with the EnvoyPatchPolicy's JSON patches applied,
loads in real Envoy with the real wasm and routes a chat request by its model to the provider's
cluster with the provider's key. Run by `make test` (pytest, in the project's virtualenv)."""

import contextlib
import copy
import functools
import glob
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import jsonpath
import jsonschema
import pytest
import yaml

from test_manifests import ENVOY, ROOT, WASM, envoy_validate, validate_builtin

EG = os.path.join(ROOT, "k8s", "envoy-gateway")
SCHEMAS = os.path.join(ROOT, "tests", "k8s", "schemas", "envoy-gateway")
FAKE = os.environ.get("FAKE_PROVIDER_BIN", os.path.join(ROOT, "target", "release", "fake-provider"))
DEMO_KEY = "sk-gateway-demo"  # sha256 is the example consumer's key_sha256


def load_all():
    docs = []
    for path in sorted(glob.glob(os.path.join(EG, "*.yaml"))):
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- strict CRD schema validation -----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def crds():
    """(apiVersion, kind) -> the served version's openAPIV3Schema, from the vendored CRDs."""
    out = {}
    for path in glob.glob(os.path.join(SCHEMAS, "*.yaml")):
        with open(path) as f:
            crd = yaml.safe_load(f)
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


# What the API server checks of metadata (ObjectMeta), for the fields these manifests may use.
OBJECT_META = {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
    "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}

KEEP = ("type", "enum", "required", "pattern", "minLength", "maxLength", "minItems", "maxItems",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems",
        "minProperties", "maxProperties")


def strict(schema, structural=True):
    """A Kubernetes structural schema as a JSON schema (draft 4, OpenAPI v3's base) that refuses
    unknown fields, as the API server's strict field validation does (kubectl apply's default):
    an object's fields are its `properties` unless it has `additionalProperties` or
    x-kubernetes-preserve-unknown-fields. Value-validation branches (allOf, anyOf, oneOf, not)
    constrain values only, so they are not made strict. The CEL rules are `cel_errors`'."""
    out = {k: schema[k] for k in KEEP if k in schema}
    if "properties" in schema:
        out["properties"] = {k: strict(v, structural) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = strict(schema["items"], structural)
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"], structural)
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            out[key] = [strict(s, False) for s in schema[key]]
    if "not" in schema:
        out["not"] = strict(schema["not"], False)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (structural and schema.get("type") == "object" and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def apply_defaults(schema, value):
    """The API server fills in a schema's `default`s before it validates (CEL rules read them)."""
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k not in value and "default" in sub:
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                apply_defaults(sub, value[k])
        if isinstance(schema.get("additionalProperties"), dict):
            for k in value:
                apply_defaults(schema["additionalProperties"], value[k])
    elif isinstance(value, list) and "items" in schema:
        for v in value:
            apply_defaults(schema["items"], v)
    return value


# Property names CEL sees escaped (Kubernetes' CEL escaping of reserved words).
CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                "void", "while"}


def cel_value(schema, value):
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            return {(f"__{k}__" if k in CEL_RESERVED else k): cel_value(props.get(k, {}), v)
                    for k, v in value.items()}
        extra = schema.get("additionalProperties")
        return {k: cel_value(extra if isinstance(extra, dict) else {}, v) for k, v in value.items()}
    if isinstance(value, list):
        return [cel_value(schema.get("items", {}), v) for v in value]
    return value


@functools.lru_cache(maxsize=None)
def cel_program(rule):
    import celpy
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(schema, value, path="spec"):
    """The CRD's CEL rules (x-kubernetes-validations) on every node present, as the API server
    evaluates them on create (transition rules, which read oldSelf, apply to updates only)."""
    import celpy
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        try:
            ok = cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(cel_value(schema, value))})
        except Exception as e:  # a rule that cannot be evaluated fails, as in the API server
            ok = f"{type(e).__name__}: {e}"
        if ok is not True and not (isinstance(ok, celpy.celtypes.BoolType) and bool(ok)):
            errors.append(f"{path}: {rule.get('message') or rule['rule']} ({ok})")
    if isinstance(value, dict):
        for k, v in value.items():
            if k in schema.get("properties", {}):
                errors += cel_errors(schema["properties"][k], v, f"{path}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += cel_errors(schema["additionalProperties"], v, f"{path}.{k}")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += cel_errors(schema["items"], v, f"{path}.{i}")
    return errors


def schema_errors(doc, schemas=None):
    schemas = schemas or crds()
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no vendored CRD schema for {key}"
    schema = strict(schemas[key])
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    v = jsonschema.Draft4Validator(schema)
    errors = sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                    for e in v.iter_errors(doc))
    if errors or "spec" not in doc:
        return errors
    spec_schema = schemas[key]["properties"]["spec"]
    return cel_errors(spec_schema, apply_defaults(spec_schema, copy.deepcopy(doc["spec"])))


BUILTIN = {("v1", "Secret"), ("v1", "Namespace")}


def test_manifests_validate_against_the_crd_schemas():
    docs = load_all()
    assert {d["kind"] for d in docs} == {
        "Namespace", "GatewayClass", "Gateway", "HTTPRoute", "HTTPRouteFilter", "ClientTrafficPolicy",
        "Backend", "EnvoyProxy", "Secret", "EnvoyExtensionPolicy", "EnvoyPatchPolicy"}
    schemas = crds()
    for d in docs:
        if (d["apiVersion"], d["kind"]) in BUILTIN:
            continue
        errors = schema_errors(d, schemas)
        assert not errors, f"{d['kind']}/{d['metadata']['name']}: {errors}"


def test_builtin_kinds_validate_strictly():
    builtin = [d for d in load_all() if (d["apiVersion"], d["kind"]) in BUILTIN]
    assert {d["kind"] for d in builtin} == {"Secret", "Namespace"}
    validate_builtin(builtin)


def mutate(kind, edit):
    doc = copy.deepcopy(next(d for d in load_all() if d["kind"] == kind))
    edit(doc["spec"])
    return doc


def _rename(d, old, new):
    d[new] = d.pop(old)


@pytest.mark.parametrize("kind,edit,error", [
    # misspelled fields, at several depths
    ("EnvoyExtensionPolicy", lambda s: _rename(s["wasm"][0]["env"], "hostKeys", "hostkeys"),
     "wasm.0.env: Additional properties are not allowed ('hostkeys' was unexpected)"),
    ("EnvoyExtensionPolicy", lambda s: _rename(s["wasm"][0], "rootID", "rootId"),
     "wasm.0: Additional properties are not allowed ('rootId' was unexpected)"),
    ("HTTPRoute", lambda s: _rename(s["rules"][0], "timeouts", "timeout"),
     "rules.0: Additional properties are not allowed ('timeout' was unexpected)"),
    ("EnvoyProxy", lambda s: _rename(s["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"][0],
                                     "valueFrom", "valuesFrom"),
     "'valuesFrom' was unexpected"),
    ("EnvoyPatchPolicy", lambda s: _rename(s["jsonPatches"][0]["operation"], "jsonPath", "jsonpath"),
     "'jsonpath' was unexpected"),
    # wrong values
    ("EnvoyPatchPolicy", lambda s: s["jsonPatches"][0]["operation"].update(op="append"),
     "jsonPatches.0.operation.op: 'append' is not one of"),
    ("Backend", lambda s: s["tls"].update(wellKnownCACertificates="Mozilla"),
     "tls.wellKnownCACertificates: 'Mozilla' does not match"),
    ("ClientTrafficPolicy", lambda s: s["connection"].update(bufferLimit="lots"),
     "connection.bufferLimit: 'lots' does not match"),
    ("EnvoyExtensionPolicy", lambda s: s["wasm"][0]["code"].pop("type"),
     "wasm.0.code: 'type' is a required property"),
    # CEL rules
    ("EnvoyExtensionPolicy", lambda s: s["wasm"][0]["code"].update(type="HTTP"),
     "spec.wasm.0.code: If type is HTTP, http field needs to be set."),
    ("Backend", lambda s: s["endpoints"][0].update(ip={"address": "10.0.0.1", "port": 443}),
     "spec.endpoints.0: only one of fqdn, ip or unix can be specified"),
    ("EnvoyExtensionPolicy", lambda s: s["targetRefs"][0].update(group="apps"),
     "spec: this policy can only have a targetRefs[*].group of gateway.networking.k8s.io"),
    ("HTTPRoute", lambda s: s["rules"][0]["filters"].append(copy.deepcopy(s["rules"][0]["filters"][0])),
     "spec.rules.0.filters: URLRewrite filter cannot be repeated"),
    ("HTTPRoute", lambda s: s["rules"][0]["matches"][0]["path"].update(value="v1"),
     "spec.rules.0.matches.0.path: value must be an absolute path"),
])
def test_schema_rejects_a_bad_manifest(kind, edit, error):
    errors = schema_errors(mutate(kind, edit))
    assert any(error in e for e in errors), errors


def test_free_form_fields_stay_free():
    # The Wasm `config` is x-kubernetes-preserve-unknown-fields: any plugin configuration fits.
    doc = mutate("EnvoyExtensionPolicy", lambda s: s["wasm"][0]["config"].update(anything={"x": 1}))
    assert schema_errors(doc) == []


# --- the resources agree with each other ----------------------------------------------------

def test_resources_reference_each_other():
    docs = load_all()
    gc, gw, route = one(docs, "GatewayClass"), one(docs, "Gateway"), one(docs, "HTTPRoute")
    ep, eep, epp = one(docs, "EnvoyProxy"), one(docs, "EnvoyExtensionPolicy"), one(docs, "EnvoyPatchPolicy")
    secret = one(docs, "Secret")
    ns = gw["metadata"]["namespace"]
    assert gc["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    ref = gc["spec"]["parametersRef"]
    assert (ref["kind"], ref["name"], ref["namespace"]) == ("EnvoyProxy", ep["metadata"]["name"],
                                                            ep["metadata"]["namespace"])
    assert gw["spec"]["gatewayClassName"] == gc["metadata"]["name"]
    assert one(docs, "Namespace")["metadata"]["name"] == ns
    # The keys: Secret -> the Envoy container's environment -> the Wasm VM -> the providers.
    env = ep["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]
    assert secret["metadata"]["namespace"] == ep["metadata"]["namespace"] == "envoy-gateway-system"
    for e in env:
        assert e["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert e["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
    wasm = eep["spec"]["wasm"][0]
    assert set(wasm["env"]["hostKeys"]) == {e["name"] for e in env}
    config = wasm["config"]
    assert {p["api_key_env"] for p in config["providers"].values()} <= set(wasm["env"]["hostKeys"])
    assert config.get("body_routing", True), "the patch policy exists for body routing"
    # Every provider's cluster has a rule on the header the filter sets, to a Backend that exists.
    backends = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Backend"}
    by_header = {}
    for rule in route["spec"]["rules"]:
        for m in rule["matches"]:
            for h in m.get("headers", []):
                assert h["name"] == "x-llm-gateway-cluster" and h["type"] == "Exact"
                by_header[h["value"]] = rule
    assert set(by_header) == {p["cluster"] for p in config["providers"].values()}
    for value, rule in by_header.items():
        (b,) = rule["backendRefs"]
        host = backends[b["name"]]["spec"]["endpoints"][0]["fqdn"]["hostname"]
        rewrite = next(f for f in rule["filters"] if f["type"] == "URLRewrite")
        assert rewrite["urlRewrite"]["hostname"] == host == backends[b["name"]]["spec"]["tls"]["sni"]
        assert rule["timeouts"]["request"] == "0s"
    fallback = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r["matches"])]
    assert len(fallback) == 1 and "backendRefs" not in fallback[0]
    one(docs, "HTTPRouteFilter", fallback[0]["filters"][0]["extensionRef"]["name"])
    # The policies attach where the patch expects them.
    assert eep["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                          "name": route["metadata"]["name"]}]
    assert epp["spec"]["targetRef"]["name"] == gw["metadata"]["name"]
    assert {d["metadata"]["namespace"] for d in (gw, route, eep, epp)} == {ns}
    assert epp["spec"]["jsonPatches"][0]["name"] == listener_name(gw)
    assert wasm_filter_name(eep) in epp["spec"]["jsonPatches"][0]["operation"]["jsonPath"]
    assert "sk-" not in json.dumps(config), "something key-like in the plugin configuration"


# --- the Envoy configuration these resources produce ---------------------------------------
#
# Envoy Gateway's translator is Go and does not run here; this builds its output for these
# resources after its golden xDS testdata at v1.9.0:
#   internal/xds/translator/testdata/out/xds-ir/wasm.listeners.yaml and wasm.routes.yaml (the
#   listener, its HTTP connection manager, the Wasm filters disabled there and enabled per route
#   with an empty FilterConfig, the routes), and internal/xds/translator/wasm.go (filter name
#   "envoy.filters.http.wasm/<policy IR name>", vm_id, configuration as a StringValue of the
#   JSON config, host_env_keys, remote code from EG's wasm HTTP server);
# in proto field names, which is how Envoy Gateway marshals a resource before it applies an
# EnvoyPatchPolicy's JSON patches to it (internal/xds/translator/jsonpatch.go, UseProtoNames).

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def listener_name(gw):
    return f"{gw['metadata']['namespace']}/{gw['metadata']['name']}/{gw['spec']['listeners'][0]['name']}"


def wasm_ir_name(eep, index=0):
    return f"envoyextensionpolicy/{eep['metadata']['namespace']}/{eep['metadata']['name']}/wasm/{index}"


def wasm_filter_name(eep):
    return "envoy.filters.http.wasm/" + wasm_ir_name(eep)


def quantity(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", q)
    return int(m.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m.group(2)]


def eg_listener(docs, port):
    gw, eep, ctp = one(docs, "Gateway"), one(docs, "EnvoyExtensionPolicy"), one(docs, "ClientTrafficPolicy")
    name = listener_name(gw)
    wasm = eep["spec"]["wasm"][0]
    vm = {"vm_id": wasm_ir_name(eep), "runtime": "envoy.wasm.runtime.v8",
          "code": {"remote": {
              "http_uri": {"uri": "https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/"
                                  "0000000000000000000000000000000000000000000000000000000000000000.wasm",
                           "cluster": "wasm_cluster", "timeout": "10s"},
              "sha256": "0" * 64,
              "retry_policy": {"num_retries": 10, "retry_back_off": {"base_interval": "1s", "max_interval": "30s"}}}}}
    if wasm.get("env", {}).get("hostKeys"):
        vm["environment_variables"] = {"host_env_keys": wasm["env"]["hostKeys"]}
    plugin = {"name": wasm.get("name", wasm_ir_name(eep)), "vm_config": vm,
              "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": json.dumps(wasm.get("config"), separators=(",", ":"))}}
    if wasm.get("rootID"):
        plugin["root_id"] = wasm["rootID"]
    if wasm.get("failOpen"):
        plugin["fail_open"] = True
    hcm = {"@type": HCM, "stat_prefix": f"http-{gw['spec']['listeners'][0]['port'] + 10000}",
           "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
           "http2_protocol_options": {"initial_connection_window_size": 1048576,
                                      "initial_stream_window_size": 65536, "max_concurrent_streams": 100},
           "http_filters": [
               {"name": wasm_filter_name(eep), "disabled": True,
                "typed_config": {"@type": WASM_TYPE, "config": plugin}},
               {"name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                 "suppress_envoy_headers": True}}],
           "merge_slashes": True, "normalize_path": True,
           "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
           "rds": {"config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                   "route_config_name": name},
           "server_header_transformation": "PASS_THROUGH", "use_remote_address": True}
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "default_filter_chain": {"name": name, "filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]},
            "max_connections_to_accept_per_socket_event": 1,
            # ClientTrafficPolicy connection.bufferLimit (Envoy Gateway's default is 32768).
            "per_connection_buffer_limit_bytes": quantity(ctp["spec"]["connection"]["bufferLimit"])}


def rule_cluster(route, i):
    return f"httproute/{route['metadata']['namespace']}/{route['metadata']['name']}/rule/{i}"


def eg_routes(docs):
    gw, route, eep = one(docs, "Gateway"), one(docs, "HTTPRoute"), one(docs, "EnvoyExtensionPolicy")
    enable = {wasm_filter_name(eep): {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                                      "config": {}}}
    routes = []
    for i, rule in enumerate(route["spec"]["rules"]):
        for j, m in enumerate(rule["matches"]):
            assert m["path"]["type"] == "PathPrefix"
            match = {"path_separated_prefix": m["path"]["value"]}
            if m.get("headers"):
                match["headers"] = [{"name": h["name"], "string_match": {"exact": h["value"]}}
                                    for h in m["headers"]]
            r = {"name": f"{rule_cluster(route, i)}/match/{j}/*", "match": match,
                 "typed_per_filter_config": enable}
            if rule.get("backendRefs"):
                action = {"cluster": rule_cluster(route, i), "upgrade_configs": [{"upgrade_type": "websocket"}]}
                for f in rule.get("filters", []):
                    assert f["type"] == "URLRewrite"
                    action["host_rewrite_literal"] = f["urlRewrite"]["hostname"]
                if "timeouts" in rule:
                    action["timeout"] = rule["timeouts"]["request"]
                r["route"] = action
            else:
                (f,) = rule["filters"]
                dr = one(docs, "HTTPRouteFilter", f["extensionRef"]["name"])["spec"]["directResponse"]
                r["direct_response"] = {"status": dr["statusCode"], "body": {"inline_string": dr["body"]["inline"]}}
                r["response_headers_to_add"] = [{"header": {"key": "Content-Type", "value": dr["contentType"]},
                                                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
            routes.append(r)
    # Envoy Gateway orders routes by precedence: the longer path, then more header matches, first.
    routes.sort(key=lambda r: (-len(r["match"]["path_separated_prefix"]), -len(r["match"].get("headers", []))))
    name = listener_name(gw)
    return {"name": name, "ignore_port_in_host_matching": True,
            "virtual_hosts": [{"name": f"{name}/*", "domains": ["*"], "routes": routes}]}


def eg_clusters(docs, endpoints=None):
    """A cluster per rule with a backend; `endpoints` (cluster -> local port) points them at the
    fake providers (plain HTTP), else they are the Backends' DNS names with TLS as Envoy Gateway
    sets them up (SNI, the system CA bundle, the host name checked)."""
    route = one(docs, "HTTPRoute")
    out = []
    for i, rule in enumerate(route["spec"]["rules"]):
        if not rule.get("backendRefs"):
            continue
        name = rule_cluster(route, i)
        backend = one(docs, "Backend", rule["backendRefs"][0]["name"])["spec"]
        fqdn = backend["endpoints"][0]["fqdn"]
        c = {"name": name, "connect_timeout": "10s", "per_connection_buffer_limit_bytes": 32768,
             "dns_lookup_family": "V4_PREFERRED",
             "circuit_breakers": {"thresholds": [{"max_retries": 1024}]}, "ignore_health_on_host_removal": True,
             "load_balancing_policy": {"policies": [{"typed_extension_config": {
                 "name": "envoy.load_balancing_policies.least_request",
                 "typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies"
                                           ".least_request.v3.LeastRequest",
                                  "locality_lb_config": {"locality_weighted_lb_config": {}}}}}]}}
        if endpoints:
            c["type"] = "STATIC"
            addr, port = "127.0.0.1", endpoints[name]
        else:
            c["type"] = "STRICT_DNS"
            addr, port = fqdn["hostname"], fqdn["port"]
            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": backend["tls"]["sni"],
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                    "match_typed_subject_alt_names": [{"san_type": "DNS",
                                                       "matcher": {"exact": fqdn["hostname"]}}]}}}}
        c["load_assignment"] = {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": addr, "port_value": port}}}}]}]}
        out.append(c)
    return out


def apply_patch_policy(docs, resources):
    """Apply the EnvoyPatchPolicy's operations as Envoy Gateway does (internal/utils/jsonpatch):
    a jsonPath is evaluated (RFC 9535) to JSON pointers, `path` appended to each, and the RFC 6902
    operation applied there; a jsonPath that selects nothing is an error."""
    epp = one(docs, "EnvoyPatchPolicy")
    assert epp["spec"]["type"] == "JSONPatch"
    for p in epp["spec"]["jsonPatches"]:
        target = resources[(p["type"], p["name"])]  # KeyError: the patch names no generated resource
        op = p["operation"]
        if "jsonPath" in op:
            pointers = [str(m.pointer()) for m in jsonpath.finditer(op["jsonPath"], target)]
            assert pointers, f"jsonPath selects nothing: {op['jsonPath']}"
            pointers = [ptr.rstrip("/") + "/" + op.get("path", "").lstrip("/") if op.get("path") else ptr
                        for ptr in pointers]
        else:
            pointers = [op["path"]]
        for ptr in pointers:
            o = {"op": op["op"], "path": ptr}
            if "value" in op:
                o["value"] = op["value"]
            jsonpath.JSONPatch([o]).apply(target)


def eg_bootstrap(docs, port, admin_port=0, endpoints=None, patch=True):
    listener = eg_listener(docs, port)
    routes = eg_routes(docs)
    if patch:
        apply_patch_policy(docs, {(LISTENER_TYPE, listener["name"]): listener})
    # The two changes for a static bootstrap: the routes inline instead of from RDS, and the
    # module from the local build instead of Envoy Gateway's wasm HTTP server (which serves the
    # plugin.wasm of the OCI image, the same file).
    hcm = listener["default_filter_chain"]["filters"][0]["typed_config"]
    del hcm["rds"]
    hcm["route_config"] = routes
    for f in hcm["http_filters"]:
        if f["typed_config"]["@type"] == WASM_TYPE:
            f["typed_config"]["config"]["vm_config"]["code"] = {"local": {"filename": WASM}}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": [listener], "clusters": eg_clusters(docs, endpoints)}}


def wasm_config(bootstrap):
    hcm = bootstrap["static_resources"]["listeners"][0]["default_filter_chain"]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["typed_config"]["@type"] == WASM_TYPE)["typed_config"]["config"]


def test_patch_policy_enables_body_routing_on_the_generated_filter():
    docs = load_all()
    unpatched = eg_bootstrap(docs, 10080, patch=False)
    assert "allow_on_headers_stop_iteration" not in wasm_config(unpatched)
    patched = eg_bootstrap(docs, 10080)
    assert wasm_config(patched)["allow_on_headers_stop_iteration"] is True
    # Nothing else changed.
    del wasm_config(patched)["allow_on_headers_stop_iteration"]
    assert patched == unpatched
    # The patch follows the filter by name: with another filter in front it still finds it.
    listener = eg_listener(docs, 10080)
    filters = listener["default_filter_chain"]["filters"][0]["typed_config"]["http_filters"]
    filters.insert(0, {"name": "envoy.filters.http.cors", "typed_config": {}})
    apply_patch_policy(docs, {(LISTENER_TYPE, listener["name"]): listener})
    assert filters[1]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert "allow_on_headers_stop_iteration" not in filters[0]["typed_config"]
    # A policy aimed at another filter name is an error, as in Envoy Gateway.
    wrong = copy.deepcopy(docs)
    one(wrong, "EnvoyPatchPolicy")["spec"]["jsonPatches"][0]["operation"]["jsonPath"] = \
        one(docs, "EnvoyPatchPolicy")["spec"]["jsonPatches"][0]["operation"]["jsonPath"].replace("wasm/0", "wasm/1")
    with pytest.raises(AssertionError, match="selects nothing"):
        eg_bootstrap(wrong, 10080)


def test_generated_config_loads_in_envoy():
    docs = load_all()
    with tempfile.TemporaryDirectory() as wd:
        log = envoy_validate(eg_bootstrap(docs, 10080), wd)
        assert "llm-gateway: configured 2 providers" in log, log[-3000:]


# --- in real Envoy, with the fake providers ------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args, env=None, cwd=None):
        self.out = tempfile.NamedTemporaryFile("w+", suffix=".log")
        self.p = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True)

    def log(self):
        self.out.seek(0)
        return self.out.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()


def wait_for(cond, what, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = cond()
        if r:
            return r
        assert proc.p.poll() is None, f"{what} exited: {proc.log()[-4000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready in {timeout}s: {proc.log()[-4000:]}")


def fake(key):
    p = Proc([FAKE, "--listen", "127.0.0.1:0", "--require-key", key, "--verbose"])
    port = wait_for(lambda: (re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.log()) or [None, None])[1],
                    "fake-provider", p)
    return p, int(port)


def post(port, body, key=DEMO_KEY, timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@contextlib.contextmanager
def running_gateway(patch=True):
    """The fake providers (one per provider rule, each refusing any key but its provider's)
    and real Envoy with the generated configuration in front of them."""
    assert os.path.exists(FAKE), "fake-provider missing: cargo build --release -p fake-provider"
    docs = load_all()
    route = one(docs, "HTTPRoute")
    keys = {"OPENAI_API_KEY": "sk-openai-eg", "ANTHROPIC_API_KEY": "sk-ant-eg"}
    procs = []
    try:
        openai, openai_port = fake(keys["OPENAI_API_KEY"])
        procs.append(openai)
        anthropic, anthropic_port = fake(keys["ANTHROPIC_API_KEY"])
        procs.append(anthropic)
        ports = {rule_cluster(route, 0): openai_port, rule_cluster(route, 1): anthropic_port}
        assert [r["name"] for r in route["spec"]["rules"][:2]] == ["openai", "anthropic"]
        port, admin = free_port(), free_port()
        with tempfile.TemporaryDirectory() as wd:
            path = os.path.join(wd, "envoy.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(eg_bootstrap(docs, port, admin, ports, patch=patch), f)
            envoy = Proc([ENVOY, "-c", path, "--use-dynamic-base-id", "--log-level", "info",
                          "--concurrency", "1"], env=dict(keys, PATH=os.environ["PATH"]), cwd=ROOT)
            procs.append(envoy)

            def ready():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False
            wait_for(ready, "envoy", envoy)
            yield {"port": port, "openai": openai, "anthropic": anthropic, "envoy": envoy}
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.fixture(scope="module")
def gateway():
    with running_gateway() as g:
        yield g


def test_chat_routes_by_model_to_the_providers_cluster(gateway):
    # An OpenAI model: the openai rule's cluster, with OPENAI_API_KEY (the fake refuses any
    # other key, the client's included).
    status, body = post(gateway["port"], {"model": "gpt-4o-mini",
                                          "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert "/v1/chat/completions" in gateway["openai"].log()
    assert "/v1/" not in gateway["anthropic"].log()
    # A Claude model: chosen from the body, translated to the Messages API, sent to the
    # anthropic rule's cluster with ANTHROPIC_API_KEY, and answered in OpenAI's format.
    status, body = post(gateway["port"], {"model": "claude-sonnet-4-5", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"].startswith("claude")
    assert "/v1/messages" in gateway["anthropic"].log()
    assert "/v1/messages" not in gateway["openai"].log()


def test_refusals_never_reach_a_provider(gateway):
    before = (gateway["openai"].log(), gateway["anthropic"].log())
    status, body = post(gateway["port"], {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
                        key="sk-not-a-consumer")
    assert status == 401, body
    assert body["error"]["type"]
    # No rule for the model: the filter answers, the catch-all rule never forwards.
    status, body = post(gateway["port"], {"model": "llama-3", "messages": [{"role": "user", "content": "Hi"}]})
    assert 400 <= status < 500 and body["error"], body
    assert (gateway["openai"].log(), gateway["anthropic"].log()) == before


def test_without_the_patch_policy_body_routing_hangs():
    # What the EnvoyPatchPolicy is for: without allow_on_headers_stop_iteration Envoy never hands
    # the filter the body it waits for, so a request routed on its model never completes.
    with running_gateway(patch=False) as g:
        with pytest.raises(TimeoutError):
            post(g["port"], {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
                 timeout=5)
        assert "/v1/" not in g["openai"].log() + g["anthropic"].log()
