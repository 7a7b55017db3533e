#!/usr/bin/env python3
"""Build the `plugin` image (see Dockerfile) without Docker: an OCI image layout with one layer
holding /plugin.wasm, written as a directory and as an oci-archive tarball.

  k8s/plugin-image/build-oci.py WASM OUT_DIR

Push it with any OCI tool, e.g. `skopeo copy oci-archive:OUT_DIR.tar docker://REGISTRY/llm-gateway/plugin:0.1.0`.
The result is byte-for-byte reproducible (fixed timestamps and ownership)."""
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    wasm_path, out = sys.argv[1], sys.argv[2]
    wasm = open(wasm_path, "rb").read()

    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(wasm), 0o444, 0, 0, 0
        t.addfile(info, io.BytesIO(wasm))
    layer_tar = layer_tar.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)

    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [{"created_by": "llm-gateway k8s/plugin-image/build-oci.py"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }, sort_keys=True).encode()

    shutil.rmtree(out, ignore_errors=True)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    for blob in (layer, config, manifest):
        with open(os.path.join(blobs, digest(blob).split(":")[1]), "wb") as f:
            f.write(blob)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(index)

    with tarfile.open(out + ".tar", "w", format=tarfile.PAX_FORMAT) as t:
        for root, _, files in sorted(os.walk(out)):
            for name in sorted(files):
                path = os.path.join(root, name)
                info = t.gettarinfo(path, os.path.relpath(path, out))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(path, "rb") as f:
                    t.addfile(info, f)
    print(f"{out}.tar: OCI image, manifest {digest(manifest)}, plugin.wasm {len(wasm)} bytes")


if __name__ == "__main__":
    main()
