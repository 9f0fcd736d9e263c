#!/bin/sh
# Provider OpenVPN helper: issue a client certificate and write a ready-to-import profile.
# Usage: openvpn-add-client NAME   (writes /root/NAME.ovpn)
set -eu
name="$1"
cd /etc/openvpn/easy-rsa
EASYRSA_BATCH=1 ./easyrsa build-client-full "$name" nopass
# The public address from the instance metadata, else the first local address.
address="$(curl -fsS --max-time 5 http://169.254.42.42/conf 2>/dev/null \
    | sed -n 's/^PUBLIC_IP_ADDRESS=//p')"
[ -n "$address" ] || address="$(hostname -I | awk '{print $1}')"
umask 077
{
    printf 'client\ndev tun\nproto udp\nremote %s 1194\n' "$address"
    printf 'resolv-retry infinite\nnobind\npersist-key\npersist-tun\n'
    printf 'remote-cert-tls server\nverb 3\n'
    printf '<ca>\n'; cat pki/ca.crt; printf '</ca>\n'
    printf '<cert>\n'; openssl x509 -in "pki/issued/$name.crt"; printf '</cert>\n'
    printf '<key>\n'; cat "pki/private/$name.key"; printf '</key>\n'
    printf '<tls-crypt>\n'; cat /etc/openvpn/server/tls-crypt.key; printf '</tls-crypt>\n'
} > "/root/$name.ovpn"
echo "/root/$name.ovpn"
