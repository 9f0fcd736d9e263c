#!/bin/sh
# Provider OpenVPN set-up: this instance's own certificate authority, server key and
# configuration, then the server. Safe to run again: an existing configuration is kept.
set -eu
conf=/etc/openvpn/server/server.conf
if [ ! -f "$conf" ]; then
    rm -rf /etc/openvpn/easy-rsa
    make-cadir /etc/openvpn/easy-rsa
    cd /etc/openvpn/easy-rsa
    export EASYRSA_BATCH=1
    ./easyrsa init-pki
    ./easyrsa --req-cn="OpenVPN CA" build-ca nopass
    ./easyrsa build-server-full server nopass
    install -m 0644 pki/ca.crt pki/issued/server.crt /etc/openvpn/server/
    install -m 0600 pki/private/server.key /etc/openvpn/server/
    openvpn --genkey secret /etc/openvpn/server/tls-crypt.key
    cat > "$conf" <<'EOF'
port 1194
proto udp
dev tun
ca ca.crt
cert server.crt
key server.key
dh none
tls-crypt tls-crypt.key
server 10.8.0.0 255.255.255.0
push "redirect-gateway def1 bypass-dhcp"
push "dhcp-option DNS 1.1.1.1"
keepalive 10 120
user nobody
group nogroup
persist-key
persist-tun
verb 3
EOF
fi
sysctl -q -p /etc/sysctl.d/60-openvpn-forward.conf
systemctl start openvpn-nat.service
systemctl enable --now openvpn-server@server.service
