#!/usr/bin/env bash
# What a real node may change on this machine, printed in a stable order: the pods tier records it
# before the node starts and after it stops, and fails when the two differ.
set -uo pipefail
for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
  net.ipv4.conf.all.route_localnet; do
  echo "sysctl $k=$(sysctl -n "$k" 2>/dev/null)"
done
ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//' | sort
ip netns list 2>/dev/null | awk '{print "netns " $1}' | sort
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do "$ipt" -t "$t" -S 2>/dev/null | sed "s/^/$ipt $t /"; done
done
findmnt -rn -o TARGET | grep -E 'kubelet|containerd|cot-vr|/run/netns|/var/run/netns' | sed 's/^/mount /' | sort
ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods 2>/dev/null | sed 's/^/cgroup /'
for p in /var/lib/kubelet /var/log/pods /var/log/containers /etc/cni /opt/cni /run/containerd; do
  [[ -e "$p" ]] && echo "path $p"
done
pgrep -a -f 'containerd-shim|kubelet|kube-proxy|coredns' | awk '{print "process " $2}' | sort
exit 0
