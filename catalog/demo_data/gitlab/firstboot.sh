#!/bin/sh
# First boot of a GitLab instance: point external_url at this instance and run the first
# reconfigure, which creates its own secrets and the initial root password
# (/etc/gitlab/initial_root_password, deleted by GitLab after 24 hours).
set -eu
address="$(hostname -I | awk '{print $1}')"
sed -i "s|^external_url .*|external_url 'http://$address'|" /etc/gitlab/gitlab.rb
gitlab-ctl reconfigure
# Later package upgrades may reconfigure automatically again.
rm -f /etc/gitlab/skip-auto-reconfigure
