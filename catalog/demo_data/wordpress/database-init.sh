#!/bin/sh
# WordPress database initialisation. The database password and the WordPress keys and salts
# must differ for every customer instance, so they are created here, at the first boot.
set -eu
# include: start-mariadb.sh
db_password="$(openssl rand -hex 24)"
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'wordpress'@'localhost' IDENTIFIED BY '$db_password';
GRANT ALL PRIVILEGES ON wordpress.* TO 'wordpress'@'localhost';
FLUSH PRIVILEGES;
SQL
cd /var/www/wordpress
cp wp-config-sample.php wp-config.php
sed -i -e "s/database_name_here/wordpress/" -e "s/username_here/wordpress/" \
    -e "s/password_here/$db_password/" wp-config.php
# One random value per key and salt.
while grep -q 'put your unique phrase here' wp-config.php; do
    sed -i "0,/put your unique phrase here/s//$(openssl rand -hex 32)/" wp-config.php
done
chown www-data:www-data wp-config.php
chmod 0640 wp-config.php
umask 077
printf 'database: wordpress\nuser: wordpress\npassword: %s\n' "$db_password" \
    > /root/wordpress-database.txt
