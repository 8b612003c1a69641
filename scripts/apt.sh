# Sourced by the install scripts: Debian packages, installed as root or through sudo.

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

apt_install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Installs the package $2 when the command $1 is missing.
apt_install_for() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2" >&2
  $sudo apt-get update -qq
  apt_install "$2"
}
