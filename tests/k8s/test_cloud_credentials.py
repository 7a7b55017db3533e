"""Cloud credentials without keys: the overlays that give the standalone gateway an AWS IAM role
(IRSA) or a Google service account (GKE workload identity), the Bedrock cluster signed by
Envoy's SigV4 filter (standalone, Istio, and the demo bootstrap envoy/gateway.yaml with its mixed
failover chain),
validated like the other manifests and loaded in real Envoy with the real wasm."""

import copy
import os
import re
import tempfile

import pytest
import yaml

from test_manifests import ISTIO, ROOT, WASM, envoy_validate, kustomize, load, validate

SIGNER = "envoy.filters.http.aws_request_signing"
CODEC = "envoy.filters.http.upstream_codec"
HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def upstream_filters(cluster):
    return cluster["typed_extension_protocol_options"][HPO]["http_filters"]


def check_bedrock_signer(signer, host):
    """A SigV4 signer for Bedrock in the region of `host`, hashing the body."""
    cfg = signer["typed_config"]
    region = re.fullmatch(r"bedrock-runtime\.([a-z0-9-]+)\.amazonaws\.com", host).group(1)
    assert cfg["service_name"] == "bedrock"
    assert cfg["region"] == region
    assert cfg["host_rewrite"] == host
    assert cfg["use_unsigned_payload"] is False


def gateway_bootstrap():
    with open(os.path.join(ROOT, "envoy", "gateway.yaml")) as f:
        b = yaml.safe_load(f)
    hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = WASM
    return b


def set_upstream_wasm(cluster):
    for f in upstream_filters(cluster):
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = WASM


@pytest.mark.parametrize("overlay,annotation", [
    ("aws-bedrock", "eks.amazonaws.com/role-arn"),
    ("gcp-vertex", "iam.gke.io/gcp-service-account"),
])
def test_cloud_overlays_render_valid_manifests(overlay, annotation):
    docs = kustomize(f"k8s/standalone/overlays/{overlay}")
    validate(docs)
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"][annotation]
    assert sa["automountServiceAccountToken"] is False
    (deploy,) = by_kind(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    assert {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"} in envoy["env"]
    if overlay == "gcp-vertex":
        assert pod["nodeSelector"] == {"iam.gke.io/gke-metadata-server-enabled": "true"}
    else:
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    secrets = by_kind(docs, "Secret")
    assert not any("AWS_" in k or "GOOGLE" in k for s in secrets for k in s.get("stringData", {}) | s.get("data", {}))


def test_standalone_bedrock_cluster_signs_after_the_filter():
    docs = kustomize("k8s/standalone/base")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("llm-gateway-envoy"))
    clusters = {c["name"]: c for c in yaml.safe_load(cm["data"]["envoy.yaml"])["static_resources"]["clusters"]}
    bedrock = clusters["bedrock"]
    host = bedrock["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]
    assert bedrock["transport_socket"]["typed_config"]["sni"] == host
    signer, codec = upstream_filters(bedrock)
    assert (signer["name"], codec["name"]) == (SIGNER, CODEC)
    # The default credential chain (env, file, IRSA, Pod Identity): no credential in the file.
    assert "credential_provider" not in signer["typed_config"]
    check_bedrock_signer(signer, host)
    addr = clusters["gcp-metadata"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"] == {"address": "169.254.169.254", "port_value": 80}


def test_istio_bedrock_manifests_agree_and_the_cluster_patch_loads():
    docs = load(os.path.join(ISTIO, "bedrock.yaml"))
    (se,) = by_kind(docs, "ServiceEntry")
    (dr,) = by_kind(docs, "DestinationRule")
    (vs,) = by_kind(docs, "VirtualService")
    (ef,) = by_kind(docs, "EnvoyFilter")
    (host,) = se["spec"]["hosts"]
    assert dr["spec"]["host"] == host
    route = vs["spec"]["http"][0]
    assert route["rewrite"]["authority"] == route["route"][0]["destination"]["host"] == host
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "CLUSTER" and patch["patch"]["operation"] == "MERGE"
    assert patch["match"]["cluster"] == {"service": host, "portNumber": 443}
    signer, codec = upstream_filters(patch["patch"]["value"])
    assert (signer["name"], codec["name"]) == (SIGNER, CODEC)
    check_bedrock_signer(signer, host)
    # The cluster Istio generates for the ServiceEntry, TLS-originating per the DestinationRule,
    # with the patch merged in: it must load in Envoy.
    cluster = {"name": f"outbound|443||{host}", "type": "LOGICAL_DNS", "connect_timeout": "10s",
               "load_assignment": {"cluster_name": f"outbound|443||{host}", "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {"address": host, "port_value": 443}}}}]}]},
               "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                   "sni": dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"]}}}
    cluster.update(copy.deepcopy(patch["patch"]["value"]))
    b = gateway_bootstrap()
    b["static_resources"]["clusters"].append(cluster)
    with tempfile.TemporaryDirectory() as wd:
        envoy_validate(b, wd)


def test_istio_vertex_manifests_agree():
    docs = load(os.path.join(ISTIO, "vertex.yaml"))
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    entries = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceEntry")}
    assert entries["gcp-metadata"]["spec"]["hosts"] == ["metadata.google.internal"]
    assert entries["gcp-metadata"]["spec"]["endpoints"] == [{"address": "169.254.169.254"}]
    (host,) = entries["vertex"]["spec"]["hosts"]
    (dr,) = by_kind(docs, "DestinationRule")
    (vs,) = by_kind(docs, "VirtualService")
    assert dr["spec"]["host"] == host
    route = vs["spec"]["http"][0]
    assert route["rewrite"]["authority"] == route["route"][0]["destination"]["host"] == host


def test_the_demo_signs_bedrock_and_only_the_bedrock_attempts_of_its_chain():
    b = gateway_bootstrap()
    clusters = {c["name"]: c for c in b["static_resources"]["clusters"]}
    signer, codec = upstream_filters(clusters["bedrock"])
    assert (signer["name"], codec["name"]) == (SIGNER, CODEC)
    check_bedrock_signer(signer, signer["typed_config"]["host_rewrite"])
    # The failover chain: the attempt filter, then the signer behind the composite filter's
    # matcher (Bedrock attempts only), then the codec.
    chain = clusters["failover-openai-bedrock-gemini"]
    names = [f["name"] for f in upstream_filters(chain)]
    assert names == ["envoy.filters.http.wasm", "envoy.filters.http.composite", CODEC]
    tree = upstream_filters(chain)[1]["typed_config"]["xds_matcher"]["matcher_tree"]
    assert tree["input"]["typed_config"]["header_name"] == "x-llm-attempt-provider"
    action = tree["exact_match_map"]["map"]["bedrock"]["action"]["typed_config"]["typed_config"]
    assert action["name"] == SIGNER
    check_bedrock_signer(action, signer["typed_config"]["host_rewrite"])
    for c in clusters.values():
        if "typed_extension_protocol_options" in c:
            set_upstream_wasm(c)
    with tempfile.TemporaryDirectory() as wd:
        log = envoy_validate(b, wd)
        assert "llm-gateway: configured as the upstream filter of a failover cluster" in log
