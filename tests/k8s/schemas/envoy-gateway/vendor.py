"""Re-vendor the CRD schemas in this folder from an Envoy Gateway git checkout:

    python3 vendor.py /path/to/envoyproxy/gateway v1.9.0

Each CRD is written to <plural>.<group>.yaml as published (only its `description` strings are
dropped, which no validation reads, to keep the files small). See README.md."""

import os
import subprocess
import sys

import yaml

EG = ["backends", "envoyextensionpolicies", "envoypatchpolicies", "envoyproxies",
      "httproutefilters", "clienttrafficpolicies"]
GATEWAY_API = ["gatewayclasses", "gateways", "httproutes"]
EG_DIR = "charts/gateway-helm/charts/crds/crds/generated"
GATEWAY_API_FILE = "charts/gateway-crds-helm/templates/standard-gatewayapi-crds.yaml"


def show(repo, ref, path):
    return subprocess.run(["git", "-C", repo, "show", f"{ref}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def write(crd, out):
    name = crd["metadata"]["name"]
    with open(os.path.join(out, name + ".yaml"), "w") as f:
        yaml.safe_dump(strip(crd), f, sort_keys=False, width=1000)


def main(repo, ref):
    out = os.path.dirname(os.path.abspath(__file__))
    for plural in EG:
        write(yaml.safe_load(show(repo, ref, f"{EG_DIR}/gateway.envoyproxy.io_{plural}.yaml")), out)
    # The standard channel, as the crds chart ships it (its Helm `if` wrapper removed).
    text = "\n".join(l for l in show(repo, ref, GATEWAY_API_FILE).splitlines() if not l.startswith("{{"))
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "CustomResourceDefinition" and \
                doc["metadata"]["name"].split(".")[0] in GATEWAY_API:
            write(doc, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
