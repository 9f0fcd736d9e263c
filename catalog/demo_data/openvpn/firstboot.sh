#!/bin/sh
# First boot of an OpenVPN instance: its own keys, then a first client profile.
set -eu
/usr/local/sbin/openvpn-instantapp-setup
[ -f /root/client1.ovpn ] || /usr/local/sbin/openvpn-add-client client1
