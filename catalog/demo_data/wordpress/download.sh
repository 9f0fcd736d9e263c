set -eu
cd /tmp
curl -fsSL -o wordpress.tar.gz https://wordpress.org/latest.tar.gz
expected="$(curl -fsSL https://wordpress.org/latest.tar.gz.sha1 | cut -d' ' -f1)"
echo "$expected  wordpress.tar.gz" | sha1sum -c -
mkdir -p /var/www
tar -xzf wordpress.tar.gz -C /var/www
chown -R www-data:www-data /var/www/wordpress
rm -f wordpress.tar.gz
