#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests: against Kubernetes' published OpenAPI schemas (strict:
an unknown field or kind is an error), then against the rules the API server enforces that the
schemas do not say, then against wsfleet itself (every flag in a container's args is one that
`wsfleet SUBCOMMAND --help` lists, every WSFLEET_SECTION__KEY variable is a configuration key).

Run by deploy/check-manifests.sh, which renders the kustomize overlays first.

    check_manifests.py [--wsfleet BIN] [-k VERSION]... [--provided FILE]... FILE...
    check_manifests.py --self-test [--wsfleet BIN]

Exit status: 0 when every document passes, 1 otherwise (each problem on a line of its own).
"""

import argparse
import json
import re
import subprocess
import sys

import kubernetes_validate
import kubernetes_validate.utils
import yaml

# The oldest release these manifests are for (backoffLimitPerIndex is GA from 1.33) and the
# newest the validator knows.
DEFAULT_VERSIONS = ["1.33", kubernetes_validate.utils.latest_version()]

POD_TEMPLATE_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet"}


def name_of(doc):
    return "%s/%s" % (doc.get("kind", "?"), (doc.get("metadata") or {}).get("name", "?"))


def schema_problems(doc, versions):
    """The schema's verdict for each Kubernetes version; a kind without a schema is a problem."""
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.utils.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append("schema %s: %s: %s" % (version, path or "(top)", error.message))
        except kubernetes_validate.utils.SchemaNotFoundError as error:
            problems.append("schema %s: %s" % (version, error.message))
        except Exception as error:  # a document that is not an object, a missing apiVersion...
            problems.append("schema %s: cannot validate: %r" % (version, error))
    return problems


def pod_template(doc):
    if doc.get("kind") in POD_TEMPLATE_KINDS:
        return (doc.get("spec") or {}).get("template") or {}
    return None


def rule_problems(doc):
    """Rules the API server enforces (or that make a manifest useless) that schemas cannot say."""
    problems = []
    template = pod_template(doc)
    if template is None:
        return problems
    spec = doc.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    pod = template.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels")
    if doc["kind"] != "Job" or selector is not None:
        for key, value in (selector or {}).items():
            if labels.get(key) != value:
                problems.append("selector %s=%s does not match the pod template's labels" % (key, value))
        if doc["kind"] != "Job" and not selector:
            problems.append("a %s needs spec.selector.matchLabels" % doc["kind"])
    restart = pod.get("restartPolicy", "Always")
    if doc["kind"] == "Job":
        if restart not in ("Never", "OnFailure"):
            problems.append("a Job's restartPolicy must be Never or OnFailure, not %s" % restart)
        if "backoffLimitPerIndex" in spec:
            if spec.get("completionMode") != "Indexed":
                problems.append("backoffLimitPerIndex needs completionMode: Indexed")
            if restart != "Never":
                problems.append("backoffLimitPerIndex needs restartPolicy: Never")
        if "podFailurePolicy" in spec and restart != "Never":
            problems.append("podFailurePolicy needs restartPolicy: Never")
        if spec.get("completionMode") == "Indexed" and "completions" not in spec:
            problems.append("an Indexed Job needs completions")
    elif restart != "Always":
        problems.append("a %s's restartPolicy must be Always" % doc["kind"])
    volumes = {volume.get("name") for volume in pod.get("volumes") or []}
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        where = "container %s" % container.get("name")
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append("%s mounts volume %s, which the pod does not have" % (where, mount.get("name")))
        ports = {port.get("name") for port in container.get("ports") or []}
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(probe_name) or {}
            for action in ("httpGet", "tcpSocket", "grpc"):
                port = (probe.get(action) or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append("%s %s names port %s, which it does not declare" % (where, probe_name, port))
        env_names = {variable.get("name") for variable in container.get("env") or []}
        for argument in (container.get("args") or []) + (container.get("command") or []):
            for variable in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(argument)):
                if variable not in env_names:
                    problems.append("%s: $(%s) in its arguments is not one of its env variables" % (where, variable))
        names = [variable.get("name") for variable in container.get("env") or []]
        for duplicate in sorted({name for name in names if names.count(name) > 1}):
            problems.append("%s sets %s twice" % (where, duplicate))
    return problems


def service_problems(docs):
    """Every Service selects the pods of some workload in the same set of manifests, on ports
    those pods declare."""
    problems = []
    templates = [pod_template(doc) for doc in docs if pod_template(doc) is not None]
    for doc in docs:
        if doc.get("kind") != "Service":
            continue
        selector = (doc.get("spec") or {}).get("selector") or {}
        matched = [
            template
            for template in templates
            if all(((template.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        if not matched:
            problems.append((doc, "its selector %s matches no pod template here" % selector))
            continue
        for port in (doc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort")
            if not isinstance(target, str):
                continue
            for template in matched:
                declared = {
                    declared_port.get("name")
                    for container in (template.get("spec") or {}).get("containers") or []
                    for declared_port in container.get("ports") or []
                }
                if target not in declared:
                    problems.append((doc, "targetPort %s is not a port of the pods it selects" % target))
    return problems


def reference_problems(docs):
    """Every Secret, ConfigMap and PersistentVolumeClaim a pod names is among `docs` (the
    manifests plus the objects the walkthrough creates), with the keys it reads."""
    problems = []
    objects = {(doc.get("kind"), (doc.get("metadata") or {}).get("name")): doc for doc in docs}

    def keys_of(kind, name):
        found = objects.get((kind, name)) or {}
        return set((found.get("data") or {}).keys()) | set((found.get("stringData") or {}).keys())

    for doc in docs:
        template = pod_template(doc)
        if template is None:
            continue
        pod = template.get("spec") or {}
        wanted = []
        for volume in pod.get("volumes") or []:
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"].get("secretName"), None))
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"].get("name"), None))
            if "persistentVolumeClaim" in volume:
                wanted.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"].get("claimName"), None))
        for container in pod.get("containers") or []:
            for variable in container.get("env") or []:
                source = variable.get("valueFrom") or {}
                for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if field in source and not source[field].get("optional"):
                        wanted.append((kind, source[field].get("name"), source[field].get("key")))
        for kind, name, key in wanted:
            if (kind, name) not in objects:
                problems.append((doc, "names %s %s, which neither the manifests nor the walkthrough create" % (kind, name)))
            elif key is not None and key not in keys_of(kind, name):
                problems.append((doc, "reads key %s of %s %s, which it does not hold" % (key, kind, name)))
    return problems


def expanded_args(container):
    """The container's args with $(VAR) replaced by the values of its plain env variables."""
    values = {variable.get("name"): variable.get("value") for variable in container.get("env") or [] if "value" in variable}
    return [
        re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda match: str(values.get(match.group(1), match.group(0))), str(argument))
        for argument in container.get("args") or []
    ]


def run_problems(docs):
    """A controller Job with `--run` waits for as many agents as the agents' Job runs at once
    and completes: otherwise the run never starts, or starts without some agents."""
    problems = []
    agent_jobs = [
        doc
        for doc in docs
        if doc.get("kind") == "Job"
        and ((doc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component") == "agent"
    ]
    for doc in docs:
        if doc.get("kind") != "Job":
            continue
        for container in ((pod_template(doc) or {}).get("spec") or {}).get("containers") or []:
            args = expanded_args(container)
            if args[:1] != ["controller"] or not any(argument.startswith("--run") for argument in args):
                continue
            wanted = [argument.split("=", 1)[1] for argument in args if argument.startswith("--agents=")]
            if not wanted:
                problems.append((doc, "a controller with --run and no --agents=N waits for one agent"))
                continue
            if len(agent_jobs) != 1:
                problems.append((doc, "a controller with --run here, and %d agent Jobs beside it" % len(agent_jobs)))
                continue
            spec = agent_jobs[0].get("spec") or {}
            counts = {"parallelism": spec.get("parallelism"), "completions": spec.get("completions")}
            for field, count in counts.items():
                if str(count) != wanted[0]:
                    problems.append(
                        (doc, "waits for --agents=%s but the agents Job has %s: %s" % (wanted[0], field, count))
                    )
    return problems


class Wsfleet:
    """What the wsfleet binary accepts: its subcommands' flags and its configuration keys."""

    def __init__(self, binary):
        self.binary = binary
        self.flags = {}
        dumped = subprocess.run([binary, "agent", "--dump-config"], capture_output=True, text=True, check=True)
        self.keys = {
            "WSFLEET_%s__%s" % (section.upper(), key.upper())
            for section, values in json.loads(dumped.stdout).items()
            for key in values
        }

    def flags_of(self, subcommand):
        if subcommand not in self.flags:
            helped = subprocess.run([self.binary, subcommand, "--help"], capture_output=True, text=True)
            if helped.returncode != 0:
                self.flags[subcommand] = None
            else:
                self.flags[subcommand] = set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", helped.stdout))
        return self.flags[subcommand]

    def problems(self, doc):
        template = pod_template(doc)
        if template is None:
            return []
        problems = []
        for container in (template.get("spec") or {}).get("containers") or []:
            if not str(container.get("image", "")).split("/")[-1].startswith("wsfleet"):
                continue
            where = "container %s" % container.get("name")
            args = [str(argument) for argument in container.get("args") or []]
            if not args:
                problems.append("%s: no wsfleet subcommand in args" % where)
                continue
            flags = self.flags_of(args[0])
            if flags is None:
                problems.append("%s: `wsfleet %s` is not a subcommand" % (where, args[0]))
                continue
            for argument in args[1:]:
                flag = argument.split("=", 1)[0]
                if flag.startswith("--") and flag not in flags:
                    problems.append("%s: `wsfleet %s` has no flag %s" % (where, args[0], flag))
            for variable in container.get("env") or []:
                name = variable.get("name", "")
                if name.startswith("WSFLEET_") and "__" in name and name not in self.keys:
                    problems.append("%s: %s is not a configuration key (wsfleet --dump-config)" % (where, name))
        return problems


def check(documents_by_file, versions, wsfleet, provided=None):
    """Returns the problems, as 'FILE: KIND/NAME: what' lines. With `provided` (the objects the
    walkthrough creates), every object a pod names must be among them or in its own file."""
    problems = []
    for filename, docs in documents_by_file.items():
        for doc in docs:
            if not isinstance(doc, dict):
                problems.append("%s: a document that is not a mapping" % filename)
                continue
            found = schema_problems(doc, versions) + rule_problems(doc)
            if wsfleet is not None:
                found += wsfleet.problems(doc)
            problems += ["%s: %s: %s" % (filename, name_of(doc), problem) for problem in found]
        problems += [
            "%s: %s: %s" % (filename, name_of(doc), problem)
            for doc, problem in service_problems(docs) + run_problems(docs)
        ]
        if provided is not None:
            problems += [
                "%s: %s: %s" % (filename, name_of(doc), problem)
                for doc, problem in reference_problems(docs + provided)
                if doc in docs
            ]
    return problems


def load(filename):
    with open(filename) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


# Broken manifests that must each be refused, with a fragment of the expected problem: proof that
# the checks above can fail.
BROKEN = {
    "a field Kubernetes does not have (ulimits)": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: wsfleet:latest
          args: [agent]
          ulimits: {nofile: 1048576}
""",
        "Additional properties are not allowed ('ulimits'",
    ),
    "a number where the schema wants an integer": (
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: "four"
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: wsfleet:latest, args: [agent]}]
""",
        "replicas: 'four' is not of type 'integer'",
    ),
    "a kind with no schema": (
        """
apiVersion: batch/v1
kind: Jobb
metadata: {name: broken}
""",
        "Couldn't find schema for kind Jobb",
    ),
    "backoffLimitPerIndex with restartPolicy OnFailure": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  completionMode: Indexed
  completions: 2
  backoffLimitPerIndex: 3
  template:
    spec:
      restartPolicy: OnFailure
      containers: [{name: x, image: wsfleet:latest, args: [agent]}]
""",
        "backoffLimitPerIndex needs restartPolicy: Never",
    ),
    "a Secret that the walkthrough does not create": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: wsfleet:latest
          args: [agent]
          env:
            - name: WSFLEET_AGENT__TOKEN
              valueFrom: {secretKeyRef: {name: wsfleet-tokens, key: token}}
""",
        "reads key token of Secret wsfleet-tokens, which it does not hold",
    ),
    "a run that waits for more agents than the agents Job starts": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: controller}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: controller
          image: wsfleet:latest
          args: [controller, --run=/s.yaml, "--agents=$(N)"]
          env: [{name: N, value: "8"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: agents, labels: {app.kubernetes.io/component: agent}}
spec:
  completionMode: Indexed
  parallelism: 4
  completions: 4
  template:
    spec:
      restartPolicy: Never
      containers: [{name: agent, image: wsfleet:latest, args: [agent, --once]}]
""",
        "waits for --agents=8 but the agents Job has parallelism: 4",
    ),
    "a Service that selects nothing": (
        """
apiVersion: v1
kind: Service
metadata: {name: broken}
spec:
  selector: {app: nothing}
  ports: [{name: grpc, port: 7600, targetPort: grpc}]
""",
        "matches no pod template here",
    ),
}

BROKEN_FOR_WSFLEET = {
    "a flag wsfleet does not have": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: agent, image: wsfleet:latest, args: [agent, --exit-after-run]}]
""",
        "`wsfleet agent` has no flag --exit-after-run",
    ),
    "a configuration variable wsfleet does not read": (
        """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: wsfleet:latest
          args: [agent]
          env: [{name: WSFLEET_AGENT__CONTROLER, value: "http://x:7600"}]
""",
        "WSFLEET_AGENT__CONTROLER is not a configuration key",
    ),
}


SELF_TEST_PROVIDED = [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wsfleet-tokens"}, "data": {"agent-token": "eA=="}}
]


def self_test(versions, wsfleet):
    cases = dict(BROKEN)
    if wsfleet is not None:
        cases.update(BROKEN_FOR_WSFLEET)
    failures = 0
    for what, (text, expected) in cases.items():
        problems = check({"self-test": list(yaml.safe_load_all(text))}, versions, wsfleet, SELF_TEST_PROVIDED)
        if any(expected in problem for problem in problems):
            print("refused as it should be: %s" % what)
        else:
            failures += 1
            print("NOT REFUSED: %s (expected a problem containing %r, got %r)" % (what, expected, problems))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wsfleet", help="the wsfleet binary, to check flags and variables against")
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument(
        "--provided",
        action="append",
        default=[],
        help="objects the walkthrough creates (Secrets, ConfigMaps): validated, and what pods name must be here",
    )
    parser.add_argument("--self-test", action="store_true", help="prove that broken manifests are refused")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    versions = args.versions or DEFAULT_VERSIONS
    wsfleet = Wsfleet(args.wsfleet) if args.wsfleet else None
    if args.self_test:
        failures = self_test(versions, wsfleet)
        print("self-test: %d passed, %d failed" % (len(BROKEN) + (len(BROKEN_FOR_WSFLEET) if wsfleet else 0) - failures, failures))
        return 1 if failures else 0
    provided = [doc for filename in args.provided for doc in load(filename)]
    documents = {filename: load(filename) for filename in args.provided + args.files}
    problems = check(documents, versions, wsfleet, provided if args.provided else None)
    for problem in problems:
        print(problem)
    count = sum(len(docs) for docs in documents.values())
    print(
        "manifests: %d document(s) in %d file(s) against Kubernetes %s: %d problem(s)"
        % (count, len(documents), ", ".join(versions), len(problems))
    )
    return 1 if problems or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
