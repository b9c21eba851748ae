#!/bin/sh
# Build dist/sensor-sso-agent_<version>_<arch>.deb: the agent and the wheels of every runtime
# dependency, installed on the sensor into their own virtual environment without any network.
#
#   packaging/build-deb.sh [OUTPUT_DIR]          (default: dist/ in the checkout)
#
# Needs python3 (the sensor's minor version: the wheels are built for it), pip with access to
# the package index or a PIP_FIND_LINKS wheelhouse, and dpkg-deb.
#
# Architecture: aiohttp, cryptography, cffi, multidict, yarl, frozenlist, propcache and
# markupsafe ship compiled extensions, so the wheels (and with them the package) only work
# on this machine's architecture and Python minor version. The package is therefore built
# for `dpkg --print-architecture` (e.g. amd64), not "all", and depends on that Python
# minor version: calling it "all" would let dpkg install it where the venv cannot be built.
# Build on the sensor's distribution (Debian 12): pip picks wheels for this machine's glibc.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
out=${1:-$src/dist}
python=${PYTHON:-python3}
name=sensor-sso-agent

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$src/agent/__init__.py")
[ -n "$version" ] || { echo "build-deb: no __version__ in agent/__init__.py" >&2; exit 1; }
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pynext=$("$python" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
# Reproducible dates: the last commit's, else now.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
lib=$root/usr/lib/$name
share=$root/usr/share/$name
doc=$root/usr/share/doc/$name
mkdir -p "$root/DEBIAN" "$lib/wheels" "$share/nginx" "$share/rsyslog" "$share/prometheus" \
    "$doc" "$root/lib/systemd/system" "$root/usr/bin"

# The agent from this checkout, every runtime dependency, and pip to install them with.
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$lib/wheels" \
    "$src" pip
for whl in "$lib/wheels"/*.whl; do
    case $(basename "$whl") in
        *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp3*-*linux*.whl|*-abi3-*linux*.whl) ;;
        *) echo "build-deb: unexpected wheel $(basename "$whl")" >&2; exit 1 ;;
    esac
done

install -m 0755 "$here/install-venv" "$lib/install-venv"
install -m 0644 "$src/systemd/$name.service" "$root/lib/systemd/system/$name.service"
install -m 0644 "$src/config/agent.example.toml" "$share/agent.example.toml"
install -m 0644 "$src/config/agent.multi-site.example.toml" "$share/agent.multi-site.example.toml"
for conf in "$src"/config/nginx/*.conf; do
    install -m 0644 "$conf" "$share/nginx/$(basename "$conf")"
done
for conf in "$src"/config/rsyslog/*.conf; do
    install -m 0644 "$conf" "$share/rsyslog/$(basename "$conf")"
done
install -m 0644 "$src/config/prometheus/sensor-sso-agent.rules.yml" \
    "$share/prometheus/sensor-sso-agent.rules.yml"
ln -s "/opt/$name/venv/bin/$name" "$root/usr/bin/$name"
mkdir -p "$root/usr/share/man/man1"
gzip -9nc "$here/$name.1" > "$root/usr/share/man/man1/$name.1.gz"
chmod 0644 "$root/usr/share/man/man1/$name.1.gz"

# Documentation: copyright (with the bundled wheels), changelog, the installation guide.
{
    cat "$here/debian/copyright"
    echo
    echo "Bundled Python packages (wheels in /usr/lib/$name/wheels; each wheel carries its"
    echo "own license file under *.dist-info/):"
    for whl in "$lib/wheels"/*.whl; do echo " $(basename "$whl")"; done
} > "$doc/copyright"
chmod 0644 "$doc/copyright"
date=$(date -u -R -d "@$epoch")
printf '%s (%s) stable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$name" "$version" "$version" "$(sed -n 's/^Maintainer: //p' "$here/debian/control")" \
    "$date" | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
for page in "$src"/docs/*.md; do
    gzip -9nc "$page" > "$doc/$(basename "$page").gz"
    chmod 0644 "$doc/$(basename "$page").gz"
done

for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@PYTHON@/$pyver/" -e "s/@PYTHON_NEXT@/$pynext/" \
    "$here/debian/control" > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$out"
deb=$out/${name}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
