systemctl start mariadb.service
tries=0
until mariadb-admin ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { echo "MariaDB did not start" >&2; exit 1; }
    sleep 1
done
