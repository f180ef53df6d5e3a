#!/usr/bin/env bash
# Builds a runtime image of wsfleet offline, from a binary already built on this machine:
# `FROM scratch` with the binary, the shared libraries `ldd` lists (and the dynamic loader), a
# passwd/group entry for the unprivileged user `wsfleet` (uid 10001) and /data owned by it. No
# registry is needed: nothing is pulled. The certificate roots are compiled into the binary
# (webpki-roots), so the image needs no CA bundle.
#
#   deploy/image/build.sh BINARY TAG        e.g. deploy/image/build.sh target/release/wsfleet wsfleet
#
# With STRIP=1 (the default) the image holds a copy of the binary without its debug sections,
# which makes a debug build's image a tenth of the size; STRIP=0 keeps it as it is.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY TAG   (e.g. $0 target/release/wsfleet wsfleet)" >&2
    exit 2
fi
binary=$1
tag=$2
if [ ! -x "$binary" ]; then
    echo "$0: $binary is not an executable file: build it first (cargo build --release --bin wsfleet)" >&2
    exit 2
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/wsfleet-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
root=$context/root
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$context/data"

if [ "${STRIP:-1}" = 1 ] && command -v objcopy >/dev/null; then
    objcopy --strip-debug "$binary" "$root/usr/local/bin/wsfleet"
else
    cp "$binary" "$root/usr/local/bin/wsfleet"
fi

# Every library the binary loads, at the path the loader looks for it, and the loader itself
# (the `/lib64/ld-linux-x86-64.so.2` line has no `=>`). `cp -L` copies what symlinks point to.
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
if [ -z "$libraries" ]; then
    echo "$0: ldd lists no library for $binary: is it a dynamically linked Linux executable?" >&2
    exit 1
fi
for library in $libraries; do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
done

printf 'root:x:0:0:root:/:/sbin/nologin\nwsfleet:x:10001:10001:wsfleet:/data:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nwsfleet:x:10001:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"

cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
COPY --chown=10001:10001 data/ /data/
USER 10001:10001
WORKDIR /data
# Agents hold many sockets: raise the container's nofile limit (e.g. --ulimit nofile=1048576).
ENTRYPOINT ["/usr/local/bin/wsfleet"]
CMD ["--help"]
DOCKERFILE

docker build --quiet --tag "$tag" "$context" >/dev/null
echo "built image $tag from $binary ($(du -sh "$root" | cut -f1) of files)"
