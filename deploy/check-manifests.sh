#!/usr/bin/env bash
# Checks what deploy/ gives users to run wsfleet on Kubernetes and with systemd, without a
# cluster (what it installs goes into a virtualenv of its own; what it makes on Docker is removed):
#
#   1. renders every kustomize entry point in deploy/kubernetes (`kubectl kustomize`, which is
#      offline) and makes, with the walkthrough's own `kubectl create ... --dry-run=client`
#      commands, the Secrets and the ConfigMap docs/deployment.md tells users to create;
#   2. validates all of them against Kubernetes' published schemas, strictly (kubernetes-validate
#      from PyPI, which bundles the schemas: no network at check time), plus the API server's
#      rules the schemas do not hold, the references between objects, and wsfleet itself (every
#      flag and WSFLEET_* variable is one the binary has) -- after proving on broken manifests
#      that each of those checks refuses what it should;
#   3. validates the example scenario with `wsfleet validate`;
#   4. plays one run of run/ and testserver/ (3 agents, a short scenario), and one of run-mtls/
#      with certificates it makes (2 agents), on Docker as a kubelet would (deploy/play_pods.py:
#      the pods' args, env, Secrets, ConfigMap, volumes, user, read-only root filesystem,
#      dropped capabilities, sysctl and limits; Services as names of their pods' addresses on a
#      private network), from an image made offline from the binary, and requires the
#      controller Job's exit code 0 and every agent's 0 -- after proving that a run whose
#      threshold fails makes the play fail;
#   5. loads the systemd env files with the binary (`--dump-config`) and runs
#      `systemd-analyze verify` on the units, in a scratch root that holds the binary at the
#      units' ExecStart path (so the units are verified as shipped), treating any warning as a
#      failure -- after proving that a broken unit is refused.
#
# Usage: deploy/check-manifests.sh            (from anywhere; needs python3 with venv, kubectl,
#                                             systemd-analyze, a running Docker engine, openssl,
#                                             objcopy, and target/debug/wsfleet or
#                                             WSFLEET=/path/to/wsfleet)
# Environment: WSFLEET (the binary), CHECK_VENV (reuse this virtualenv instead of a new one),
# CHECK_KEEP=1 (keep the scratch folder, containers, network and image, to look into a failure).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kube="$repo/deploy/kubernetes"
units="$repo/deploy/systemd"
wsfleet=${WSFLEET:-${CARGO_TARGET_DIR:-$repo/target}/debug/wsfleet}
# The validator, pinned: its bundled schemas go up to this Kubernetes release.
validator="kubernetes-validate==1.37.0"
# Every directory of deploy/kubernetes is either rendered here or is a part of those.
entry_points=(run serve run-mtls serve-mtls testserver example)
parts=(base mtls)

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/wsfleet-check-manifests.XXXXXX")
# What step 4 makes on Docker carries this label (and the image this tag): removed at exit.
play_label="wsfleet-k8s-$$"
image="wsfleet-check-manifests:$$"
cleanup() {
	if [[ -n ${CHECK_KEEP:-} ]]; then
		echo "check-manifests: kept $work and what carries label wsfleet-play=$play_label (CHECK_KEEP)" >&2
		return
	fi
	if command -v docker >/dev/null; then
		docker ps --all --quiet --filter "label=wsfleet-play=$play_label" | xargs --no-run-if-empty docker rm --force >/dev/null
		docker network ls --quiet --filter "label=wsfleet-play=$play_label" | xargs --no-run-if-empty docker network rm >/dev/null
		docker image rm --force "$image" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "check-manifests: $*" >&2
	exit 1
}

for tool in python3 kubectl systemd-analyze docker openssl objcopy ldd; do
	command -v "$tool" >/dev/null || fail "$tool is needed and not on PATH"
done
[[ -x $wsfleet ]] || fail "no wsfleet binary at $wsfleet: build it with \`cargo build --bin wsfleet\` or set WSFLEET"

# -- the validator, in a virtualenv of its own --------------------------------------------------
venv=${CHECK_VENV:-$work/venv}
if [[ ! -x $venv/bin/python ]]; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "$validator"
fi
python=$venv/bin/python

# -- 1. render -----------------------------------------------------------------------------------
for dir in "$kube"/*/; do
	name=$(basename "$dir")
	[[ " ${entry_points[*]} ${parts[*]} " == *" $name "* ]] ||
		fail "deploy/kubernetes/$name is neither an entry point nor a part: add it to this script"
done
rendered=()
for name in "${entry_points[@]}"; do
	kubectl kustomize "$kube/$name" >"$work/$name.yaml" || fail "kubectl kustomize deploy/kubernetes/$name failed"
	rendered+=("$work/$name.yaml")
done

# The objects docs/deployment.md has users create, by its own commands (keep them in step).
mkdir -p "$work/tls"
for file in ca.crt controller.crt controller.key agent.crt agent.key; do
	echo "not a certificate: only the Secret's shape is checked" >"$work/tls/$file"
done
(
	cd "$work/tls"
	kubectl create secret generic wsfleet-tokens \
		--from-literal=agent-token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
		--from-literal=api-token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
		--dry-run=client -o yaml
	echo ---
	kubectl create configmap wsfleet-scenario \
		--from-file=scenario.yaml="$kube/testserver/scenario.yaml" --dry-run=client -o yaml
	echo ---
	kubectl create secret generic wsfleet-controller-tls \
		--from-file=tls.crt=controller.crt --from-file=tls.key=controller.key --from-file=ca.crt=ca.crt \
		--dry-run=client -o yaml
	echo ---
	kubectl create secret generic wsfleet-agent-tls \
		--from-file=tls.crt=agent.crt --from-file=tls.key=agent.key --from-file=ca.crt=ca.crt \
		--dry-run=client -o yaml
) >"$work/created.yaml"

# -- 2. validate ---------------------------------------------------------------------------------
"$python" "$repo/deploy/check_manifests.py" --wsfleet "$wsfleet" --self-test
"$python" "$repo/deploy/check_manifests.py" --wsfleet "$wsfleet" --provided "$work/created.yaml" "${rendered[@]}"

# -- 3. the example scenario ---------------------------------------------------------------------
"$wsfleet" validate "$kube/testserver/scenario.yaml"

# -- 4. one run, played on Docker ----------------------------------------------------------------
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"
# The image: the binary, stripped of debug information, and the shared libraries it loads; no
# base image (none can be pulled). It runs as the user the manifests give.
context=$work/image
mkdir -p "$context/usr/local/bin"
objcopy --strip-debug "$wsfleet" "$context/usr/local/bin/wsfleet"
for library in $(ldd "$wsfleet" | grep -oE '/[^ ]+'); do
	mkdir -p "$context$(dirname "$library")"
	cp -L "$library" "$context$library"
done
# Names from /etc/hosts first (play_pods.py gives each container the Services' addresses there),
# as Debian's default nsswitch.conf does.
mkdir -p "$context/etc"
echo 'hosts: files dns' >"$context/etc/nsswitch.conf"
printf 'FROM scratch\nCOPY . /\nUSER 10001:10001\nENTRYPOINT ["/usr/local/bin/wsfleet"]\n' >"$context/Dockerfile"
docker build --quiet --tag "$image" "$context" >"$work/build.log" 2>&1 ||
	fail "cannot build the image: $(cat "$work/build.log")"

# Plays NAME: an overlay of BASE (run/ or run-mtls/) and testserver/ with AGENTS agents, in a copy
# of deploy/kubernetes (kustomize takes only paths below or beside the overlay), with the objects
# of CREATED (a file) and a short scenario as the ConfigMap.
cp -r "$kube" "$work/kubernetes"
sed -e 's/vus: 200/vus: 30/' -e 's/duration: 30s/duration: 4s/' "$kube/testserver/scenario.yaml" >"$work/scenario.yaml"
"$wsfleet" validate "$work/scenario.yaml" >/dev/null
play() {
	local name=$1 base=$2 agents=$3 created=$4 scenario=${5:-$work/scenario.yaml}
	mkdir -p "$work/kubernetes/play-$name"
	{
		printf 'resources: [../%s, ../testserver]\n' "$base"
		printf 'images: [{name: wsfleet, newName: %s, newTag: "%s"}]\n' "${image%%:*}" "${image##*:}"
		printf 'patches:\n  - target: {kind: Job, name: wsfleet-agents}\n'
		printf '    patch: |-\n      - {op: replace, path: /spec/parallelism, value: %d}\n' "$agents"
		sed -n '/^replacements:/,$p' "$kube/example/kustomization.yaml"
	} >"$work/kubernetes/play-$name/kustomization.yaml"
	kubectl kustomize "$work/kubernetes/play-$name" >"$work/play-$name.yaml"
	{
		cat "$created"
		echo ---
		kubectl create configmap wsfleet-scenario --from-file=scenario.yaml="$scenario" --dry-run=client -o yaml
	} >"$work/play-$name-created.yaml"
	"$python" "$repo/deploy/play_pods.py" --image "$image" --provided "$work/play-$name-created.yaml" \
		--label "$play_label" --name "$name" --workdir "$work" "$work/play-$name.yaml"
}

# The tokens Secret, as the walkthrough makes it.
sed -n '1,/^---$/p' "$work/created.yaml" | sed '$d' >"$work/tokens.yaml"
# Proof that a failed run fails the play: a threshold no run can meet makes the controller exit 5.
sed -e 's/duration: 4s/duration: 1s/' -e 's/p99: "< 100ms"/p99: "< 1us"/' "$work/scenario.yaml" >"$work/failing.yaml"
if play failing run 1 "$work/tokens.yaml" "$work/failing.yaml" >"$work/failing.log"; then
	cat "$work/failing.log"
	fail "self-test: a run whose threshold failed passed the play"
fi
grep -q 'controller exit 5,' "$work/failing.log" || { cat "$work/failing.log"; fail "self-test: the failing run did not end with exit code 5"; }
echo "refused as it should be: a played run whose threshold failed (controller exit 5)"
play plain run 3 "$work/tokens.yaml" || fail "the run played from deploy/kubernetes/run did not pass (above)"

# Mutual TLS, with real certificates: a CA, the controller's for the name agents dial, an
# agent's; as the two Secrets of the walkthrough.
pki=$work/pki
mkdir -p "$pki"
(
	cd "$pki"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=wsfleet-check-ca -keyout ca.key -out ca.crt
	for role in controller agent; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=wsfleet-$role" -keyout "$role.key" -out "$role.csr"
	done
	printf 'subjectAltName=DNS:wsfleet-controller\nextendedKeyUsage=serverAuth\n' >controller.ext
	printf 'extendedKeyUsage=clientAuth\n' >agent.ext
	for role in controller agent; do
		openssl x509 -req -in "$role.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
			-extfile "$role.ext" -out "$role.crt"
	done
	cat "$work/tokens.yaml"
	for role in controller agent; do
		echo ---
		kubectl create secret generic "wsfleet-$role-tls" \
			--from-file=tls.crt="$role.crt" --from-file=tls.key="$role.key" --from-file=ca.crt=ca.crt \
			--dry-run=client -o yaml
	done
) >"$work/tls-created.yaml" 2>"$work/pki.log" || fail "cannot make the test certificates: $(cat "$work/pki.log")"
play mtls run-mtls 2 "$work/tls-created.yaml" || fail "the run played from deploy/kubernetes/run-mtls did not pass (above)"

# -- 5. systemd ----------------------------------------------------------------------------------
# The env files set only keys the binary reads, with values it accepts.
for service in controller agent; do
	env -i PATH=/usr/bin:/bin $(grep -E '^[A-Z_]+=' "$units/$service.env") \
		"$wsfleet" "$service" --dump-config >/dev/null ||
		fail "deploy/systemd/$service.env does not load: see the error above"
	for key in $(grep -oE '^#?WSFLEET_[A-Z_]+' "$units/$service.env" | tr -d '#'); do
		section=$(echo "$key" | sed -E 's/^WSFLEET_([A-Z]+)__.*/\1/' | tr 'A-Z' 'a-z')
		field=$(echo "$key" | sed -E 's/^WSFLEET_[A-Z]+__(.*)/\1/' | tr 'A-Z' 'a-z')
		env -i "$wsfleet" "$service" --dump-config |
			"$python" -c "import json,sys; sys.exit(0 if '$field' in json.load(sys.stdin)['$section'] else 1)" ||
			fail "deploy/systemd/$service.env names $key, which is not a configuration key"
	done
done

# A scratch root for `systemd-analyze verify --root`: systemd's own units (for the targets the
# units order against), the units under test, and the binary where ExecStart looks for it.
root=$work/root
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
ln "$wsfleet" "$root/usr/local/bin/wsfleet" 2>/dev/null || cp "$wsfleet" "$root/usr/local/bin/wsfleet"

# Prints what systemd-analyze says of UNITS (file names) in the scratch root; fails if anything.
verify_units() {
	local said status=0
	said=$(cd "$work" && systemd-analyze verify --root="$root" "$@" 2>&1) || status=$?
	if [[ $status -ne 0 || -n $said ]]; then
		echo "$said"
		return 1
	fi
}

# Proof that a unit with a mistake is refused: systemd-analyze exits 0 on a key it ignores, so
# any output counts as a failure.
sed 's/^LimitNOFILE=/LimitNOFILES=/' "$units/wsfleet-agent.service" >"$root/etc/systemd/system/wsfleet-broken.service"
if verify_units wsfleet-broken.service >/dev/null; then
	fail "self-test: a unit with an unknown key passed systemd-analyze verify"
fi
echo "refused as it should be: a unit with an unknown key"
rm "$root/etc/systemd/system/wsfleet-broken.service"

cp "$units"/*.service "$root/etc/systemd/system/"
unit_names=()
for unit in "$units"/*.service; do
	unit_names+=("$(basename "$unit")")
done
verify_units "${unit_names[@]}" || fail "systemd-analyze verify found problems in deploy/systemd (above)"
echo "systemd: ${#unit_names[@]} unit(s) pass systemd-analyze verify ($(systemd-analyze --version | head -1))"

echo "check-manifests: all passed in $((SECONDS - started)) s"
