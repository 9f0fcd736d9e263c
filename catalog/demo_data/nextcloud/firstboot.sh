#!/bin/sh
# First boot of a Nextcloud instance: its own database password and administrator password.
set -eu
# include: start-mariadb.sh
db_password="$(openssl rand -hex 24)"
admin_password="$(openssl rand -hex 16)"
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS nextcloud CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER IF NOT EXISTS 'nextcloud'@'localhost' IDENTIFIED BY '$db_password';
GRANT ALL PRIVILEGES ON nextcloud.* TO 'nextcloud'@'localhost';
FLUSH PRIVILEGES;
SQL
cd /var/www/nextcloud
runuser -u www-data -- php occ maintenance:install --database mysql \
    --database-name nextcloud --database-user nextcloud --database-pass "$db_password" \
    --admin-user admin --admin-pass "$admin_password" --data-dir /var/www/nextcloud/data
address="$(hostname -I | awk '{print $1}')"
runuser -u www-data -- php occ config:system:set trusted_domains 1 --value="$address"
umask 077
printf 'url: http://%s/\nadmin user: admin\nadmin password: %s\n' "$address" \
    "$admin_password" > /root/nextcloud-credentials.txt
