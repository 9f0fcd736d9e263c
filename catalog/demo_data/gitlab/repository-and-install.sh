set -eu
install -m 0755 -d /etc/apt/keyrings
curl -fsSL https://packages.gitlab.com/gitlab/gitlab-ce/gpgkey \
    | gpg --dearmor -o /etc/apt/keyrings/gitlab-ce.gpg
. /etc/os-release
echo "deb [signed-by=/etc/apt/keyrings/gitlab-ce.gpg] \
https://packages.gitlab.com/gitlab/gitlab-ce/ubuntu/ $VERSION_CODENAME main" \
    > /etc/apt/sources.list.d/gitlab-ce.list
apt-get update
mkdir -p /etc/gitlab
touch /etc/gitlab/skip-auto-reconfigure
DEBIAN_FRONTEND=noninteractive apt-get install -y gitlab-ce
