#!/bin/sh
# Boot-time WordPress configuration: tell the customer where to finish the installation.
set -eu
address="$(hostname -I | awk '{print $1}')"
cat > /etc/motd <<EOF
WordPress is installed. Finish its set-up in a browser: http://$address/wp-admin/install.php
The database credentials are in /root/wordpress-database.txt.
EOF
