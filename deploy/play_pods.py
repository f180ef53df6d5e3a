#!/usr/bin/env python3
"""Plays the pods of a rendered `run/` overlay on Docker, as a kubelet and the Job controller
would for the parts these manifests use, and checks the run's verdict: the controller Job's pod
exits 0 and every index of the agents Job ends with a pod that exited 0.

What is played, from the manifests as rendered: each Deployment's and Job's pod template (image,
args with $(VAR) expanded, env from values, Secrets and the pod's name, configMap, secret and
emptyDir volumes, runAsUser/runAsGroup/fsGroup, read-only root filesystem, no privilege
escalation, dropped capabilities, sysctls, memory and CPU limits), each Service as a name (a hosts
entry) for the address of the pod it selects on one private network, and the agents' Indexed Job with a new pod for
a failed index (as `backoffLimitPerIndex` allows; back-off shortened to 2 s). Readiness probes,
scheduling and PersistentVolumeClaims are not played.

    play_pods.py --image IMAGE --provided CREATED.yaml --label VALUE --name PLAY --workdir DIR RENDERED.yaml

Every container and the network carry the label wsfleet-play=VALUE, and VALUE-PLAY begins their
names; the caller removes them.
Exit status 0 when the run passed; 1 otherwise, with the containers' logs.
"""

import argparse
import base64
import ipaddress
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

BACKOFF_SECONDS = 2
DEADLINE_SECONDS = 60


def docker(*args, check=True):
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit("docker %s failed: %s" % (" ".join(args[:2]), result.stderr.strip()))
    return result.stdout.strip()


def labels_of(template):
    return (template.get("metadata") or {}).get("labels") or {}


def memory_bytes(quantity):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if str(quantity).endswith(suffix):
            return int(str(quantity)[: -len(suffix)]) * factor
    return int(quantity)


def cpus(quantity):
    text = str(quantity)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


class Player:
    def __init__(self, docs, provided, image, label, name, workdir):
        self.docs = docs
        self.name = name
        self.objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs + provided}
        self.image = image
        self.label = label
        self.workdir = workdir
        self.network = "%s-%s" % (label, name)
        # A subnet of our own, to give pods fixed addresses (`--ip` needs one): the first of a few
        # /24s that no other network on this engine uses.
        for third in range(os.getpid() % 200, os.getpid() % 200 + 40):
            subnet = ipaddress.ip_network("10.231.%d.0/24" % (third % 256))
            created = subprocess.run(
                ["docker", "network", "create", "--label", "wsfleet-play=%s" % label, "--subnet", str(subnet), self.network],
                capture_output=True,
                text=True,
            )
            if created.returncode == 0:
                break
        else:
            raise SystemExit("cannot create the network %s: %s" % (self.network, created.stderr.strip()))
        self.addresses = itertools.islice(subnet.hosts(), 10, None)
        # Each Service's name and the address of the one pod it selects (pod 0 of its workload),
        # given to every container as a hosts entry: Docker's embedded DNS has been seen to answer
        # NXDOMAIN for live containers on this engine, and a kubelet's pods get a Service's address
        # from the cluster's DNS, not from the engine's.
        self.pod_addresses = {}
        self.hosts = []
        for service in docs:
            if service["kind"] != "Service":
                continue
            selector = service["spec"].get("selector") or {}
            for doc in docs:
                if doc["kind"] in ("Deployment", "Job") and all(
                    labels_of(doc["spec"]["template"]).get(key) == value for key, value in selector.items()
                ):
                    pod = "%s-0" % doc["metadata"]["name"]
                    address = self.pod_addresses.setdefault(pod, str(next(self.addresses)))
                    self.hosts.append("%s:%s" % (service["metadata"]["name"], address))

    def data_of(self, kind, name):
        found = self.objects.get((kind, name))
        if found is None:
            raise SystemExit("%s %s is neither in the manifests nor among the created objects" % (kind, name))
        data = dict(found.get("data") or {})
        if kind == "Secret":
            data = {key: base64.b64decode(value).decode() for key, value in data.items()}
        return data

    def aliases(self, template):
        """The Services that select this pod: their names resolve to it, on the same ports."""
        names = []
        ports = {
            port.get("name"): port.get("containerPort")
            for container in template["spec"]["containers"]
            for port in container.get("ports") or []
        }
        for doc in self.docs:
            if doc["kind"] != "Service":
                continue
            selector = doc["spec"].get("selector") or {}
            if all(labels_of(template).get(key) == value for key, value in selector.items()):
                for port in doc["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    if ports.get(target, target) != port["port"]:
                        raise SystemExit("Service %s maps port %s elsewhere: not played" % (doc["metadata"]["name"], port["port"]))
                names.append(doc["metadata"]["name"])
        return names

    def start(self, pod_name, template):
        spec = template["spec"]
        pod_security = spec.get("securityContext") or {}
        pod_dir = os.path.join(self.workdir, pod_name)
        mounts = {}
        for volume in spec.get("volumes") or []:
            path = os.path.join(pod_dir, volume["name"])
            if "configMap" in volume or "secret" in volume:
                kind, source = ("ConfigMap", volume["configMap"]["name"]) if "configMap" in volume else ("Secret", volume["secret"]["secretName"])
                mode = (volume.get("configMap") or volume.get("secret")).get("defaultMode", 0o644)
                os.makedirs(path)
                for key, value in self.data_of(kind, source).items():
                    file = os.path.join(path, key)
                    with open(file, "w") as handle:
                        handle.write(value)
                    os.chown(file, 0, pod_security.get("fsGroup", 0))
                    os.chmod(file, mode)
                os.chmod(path, 0o755)
                mounts[volume["name"]] = ("bind", path)
            elif "emptyDir" in volume:
                mounts[volume["name"]] = ("tmpfs", None)
            else:
                raise SystemExit("pod %s: volume %s is of a kind not played" % (pod_name, volume["name"]))
        (container,) = spec["containers"]
        security = container.get("securityContext") or {}
        args = [
            "run", "--detach", "--name", "%s-%s-%s" % (self.label, self.name, pod_name),
            "--label", "wsfleet-play=%s" % self.label,
            "--network", self.network, "--hostname", pod_name,
            "--ip", self.pod_addresses.get(pod_name) or str(next(self.addresses)),
        ]
        for host in self.hosts:
            args += ["--add-host", host]
        for alias in self.aliases(template):
            args += ["--network-alias", alias]
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        group = security.get("runAsGroup", pod_security.get("runAsGroup"))
        if user is not None:
            args += ["--user", "%s:%s" % (user, group if group is not None else user)]
        if "fsGroup" in pod_security:
            args += ["--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for capability in (security.get("capabilities") or {}).get("drop") or []:
            args += ["--cap-drop", capability]
        for sysctl in pod_security.get("sysctls") or []:
            args += ["--sysctl", "%s=%s" % (sysctl["name"], sysctl["value"])]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", str(memory_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", cpus(limits["cpu"])]
        values = {}
        for variable in container.get("env") or []:
            source = variable.get("valueFrom")
            if source is None:
                value = variable.get("value", "")
            elif "secretKeyRef" in source:
                value = self.data_of("Secret", source["secretKeyRef"]["name"])[source["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in source:
                value = self.data_of("ConfigMap", source["configMapKeyRef"]["name"])[source["configMapKeyRef"]["key"]]
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                value = pod_name
            else:
                raise SystemExit("pod %s: env %s comes from a source not played" % (pod_name, variable["name"]))
            values[variable["name"]] = value
            args += ["--env", "%s=%s" % (variable["name"], value)]
        for mount in container.get("volumeMounts") or []:
            kind, path = mounts[mount["name"]]
            if kind == "bind":
                args += ["--volume", "%s:%s:%s" % (path, mount["mountPath"], "ro" if mount.get("readOnly") else "rw")]
            else:
                args += ["--mount", "type=tmpfs,destination=%s,tmpfs-mode=1777" % mount["mountPath"]]
        expanded = [
            re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda match: values.get(match.group(1), match.group(0)), str(argument))
            for argument in container.get("args") or []
        ]
        docker(*args, self.image, *expanded)
        return "%s-%s-%s" % (self.label, self.name, pod_name)

    def state(self, container):
        status, code = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container).split()
        return status, int(code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--provided", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--name", required=True, help="this play's name, in its containers' and network's names")
    parser.add_argument("--workdir", required=True, help="where the pods' volumes are laid out")
    parser.add_argument("rendered")
    args = parser.parse_args()
    with open(args.rendered) as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc]
    with open(args.provided) as handle:
        provided = [doc for doc in yaml.safe_load_all(handle) if doc]
    workdir = tempfile.mkdtemp(prefix="pods-", dir=args.workdir)
    player = Player(docs, provided, args.image, args.label, args.name, workdir)

    def component(doc):
        return (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component")

    for doc in docs:
        if doc["kind"] == "Deployment":
            for replica in range(doc["spec"].get("replicas", 1)):
                player.start("%s-%d" % (doc["metadata"]["name"], replica), doc["spec"]["template"])
    (agents,) = [doc for doc in docs if doc["kind"] == "Job" and component(doc) == "agent"]
    (controller,) = [doc for doc in docs if doc["kind"] == "Job" and component(doc) == "controller"]
    # Agents first: those that find no controller yet exit and are retried, as on a cluster
    # where the agents' pods start first.
    spec = agents["spec"]
    retries = spec.get("backoffLimitPerIndex", 0)
    indexes = {}
    for index in range(spec["completions"]):
        name = "%s-%d-a0" % (agents["metadata"]["name"], index)
        indexes[index] = {"attempt": 0, "container": player.start(name, spec["template"]), "done": None, "retry_at": None}
    time.sleep(3)
    controller_container = player.start("%s-0" % controller["metadata"]["name"], controller["spec"]["template"])
    deadline = time.monotonic() + DEADLINE_SECONDS
    controller_code = None
    while time.monotonic() < deadline:
        if controller_code is None:
            status, code = player.state(controller_container)
            if status == "exited":
                controller_code = code
        for index, entry in indexes.items():
            if entry["done"] is not None:
                continue
            if entry["retry_at"] is not None:
                if time.monotonic() >= entry["retry_at"]:
                    entry["attempt"] += 1
                    name = "%s-%d-a%d" % (agents["metadata"]["name"], index, entry["attempt"])
                    entry["container"] = player.start(name, spec["template"])
                    entry["retry_at"] = None
                continue
            status, code = player.state(entry["container"])
            if status != "exited":
                continue
            if code == 0:
                entry["done"] = "succeeded"
            elif entry["attempt"] < retries:
                print("agent index %d: pod exited %d, a new one in %d s" % (index, code, BACKOFF_SECONDS))
                entry["retry_at"] = time.monotonic() + BACKOFF_SECONDS
            else:
                entry["done"] = "failed (exit %d)" % code
        if controller_code is not None and all(entry["done"] for entry in indexes.values()):
            break
        time.sleep(0.5)
    logs = subprocess.run(["docker", "logs", controller_container], capture_output=True, text=True)
    print("controller's log, last lines:")
    for line in (logs.stderr + logs.stdout).strip().splitlines()[-16:]:
        print("  " + line)
    problems = []
    if controller_code != 0:
        print("controller's container: " + docker("inspect", "--format", "{{json .State}}", controller_container, check=False))
        problems.append("the controller Job's pod %s" % ("did not exit in time" if controller_code is None else "exited %d" % controller_code))
    for index, entry in indexes.items():
        if entry["done"] != "succeeded":
            problems.append("agent index %d: %s" % (index, entry["done"] or "did not end in time"))
            agent_logs = subprocess.run(["docker", "logs", entry["container"]], capture_output=True, text=True)
            print("agent index %d's log:\n%s" % (index, (agent_logs.stdout + agent_logs.stderr)[-2000:]))
    for problem in problems:
        print("PROBLEM: " + problem)
    retried = sum(entry["attempt"] for entry in indexes.values())
    print(
        "pods played (%s): controller exit %s, %d of %d agent indexes succeeded (%d retried pod(s))"
        % (args.name, controller_code, sum(entry["done"] == "succeeded" for entry in indexes.values()), len(indexes), retried)
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
