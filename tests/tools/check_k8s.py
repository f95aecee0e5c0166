#!/usr/bin/python3
"""check_k8s.py FILE - offline shape check of docker/k8s.yaml.

kubectl's --dry-run=client still downloads the API server's OpenAPI schema
to validate, so it cannot run without a cluster; this checks what a wrong
edit would break: each kind's apiVersion, the required fields, that names
refer to each other (selectors and labels, volume mounts and volumes, the
claim, the Service's target ports), and the replica setup of issue 21: a
ReadWriteMany claim mounted at the spool dir, spool.shared: true, the
listener's proxy_protocol, and the Service's PROXY annotation or
externalTrafficPolicy: Local. The embedded proxy.yaml itself is checked by
`smtp-tls-proxy --check` in tests/tools/check_presets.sh.
"""
import sys

import yaml

API = {
    "Secret": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
}
errors = []


def need(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def main(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {}
    for d in docs:
        kind = d.get("kind")
        need(kind in API, f"unknown kind {kind!r}")
        need(d.get("apiVersion") == API.get(kind), f"{kind}: apiVersion {d.get('apiVersion')!r}")
        need(d.get("metadata", {}).get("name"), f"{kind}: no metadata.name")
        by.setdefault(kind, []).append(d)
    for k in API:
        need(k in by, f"no {k}")
    if errors:
        return
    dep = by["Deployment"][0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    need(spec["selector"]["matchLabels"].items() <= labels.items(),
         "Deployment: selector does not match the pod labels")
    need(spec.get("replicas", 1) >= 2, "Deployment: fewer than 2 replicas")
    ctr = pod["containers"][0]
    need(ctr.get("image"), "container: no image")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in ctr.get("volumeMounts", [])}
    for name in mounts:
        need(name in vols, f"volumeMount {name} has no volume")
    cm = by["ConfigMap"][0]
    cfg = yaml.safe_load(cm["data"]["proxy.yaml"])
    spool = cfg.get("spool") or {}
    need(spool.get("shared") is True, "proxy.yaml: spool.shared is not true")
    spool_mount = [m for m in ctr.get("volumeMounts", []) if m["mountPath"] == spool.get("dir")]
    if need(spool_mount, "no volume mounted at the spool dir"):
        vol = vols.get(spool_mount[0]["name"], {})
        claim = vol.get("persistentVolumeClaim", {}).get("claimName")
        pvcs = {p["metadata"]["name"]: p for p in by["PersistentVolumeClaim"]}
        if need(claim in pvcs, f"spool volume's claim {claim!r} not defined"):
            need("ReadWriteMany" in pvcs[claim]["spec"].get("accessModes", []),
                 "spool claim is not ReadWriteMany")
            need(pvcs[claim]["spec"].get("resources", {}).get("requests", {}).get("storage"),
                 "spool claim: no storage request")
    need(pod.get("securityContext", {}).get("fsGroup") is not None,
         "pod: no fsGroup (the spool volume must be writable by the proxy's user)")
    need(all(l.get("proxy_protocol") for l in cfg.get("listeners", [])),
         "proxy.yaml: a listener without proxy_protocol")
    need(cm["metadata"]["name"] in str(vols), "the ConfigMap is not mounted")
    svc = by["Service"][0]
    need(svc["spec"]["selector"].items() <= labels.items(), "Service: selector matches no pod")
    ports = {p.get("name") for p in ctr.get("ports", [])} | {p.get("containerPort") for p in ctr.get("ports", [])}
    for p in svc["spec"]["ports"]:
        need(p.get("targetPort") in ports, f"Service: targetPort {p.get('targetPort')!r} not a container port")
    ann = svc["metadata"].get("annotations", {})
    need(any("proxy-protocol" in k for k in ann) or svc["spec"].get("externalTrafficPolicy") == "Local",
         "Service: neither a PROXY protocol annotation nor externalTrafficPolicy: Local")
    print(f"{path}: " + ", ".join(sorted(f"{k} x{len(v)}" for k, v in by.items())) +
          f"; spool {spool.get('dir')} shared on claim {claim}; proxy_protocol "
          f"{cfg['listeners'][0]['proxy_protocol']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docker/k8s.yaml")
    for e in errors:
        print("check_k8s: FAIL:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)
