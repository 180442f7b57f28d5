#!/usr/bin/env bash
# Runs the kernel datapath's verifier and differential tests on an older kernel than
# the machine's: Debian's 6.1 cloud kernel (an older verifier, and no TCX), booted
# under qemu with a busybox initramfs that holds a static build of the loader tests
# and testdata. Software emulation (TCG), since nested KVM is not always there.
#
#   bash .ci/kernel-vm.sh        (as root, amd64; installs qemu and busybox with apt)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = x86_64 ] || { echo "kernel-vm: amd64 only, skipped"; exit 0; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | cut -d' ' -f1 | sort -V | tail -n 1)
[ -n "$pkg" ] || { echo "kernel-vm: no 6.1 cloud kernel package found"; exit 1; }
(cd "$work" && apt-get download -qq "$pkg" 2>/dev/null)
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/k"
kernel=$(ls "$work"/k/boot/vmlinuz-*)

root="$work/root"
mkdir -p "$root"/{bin,proc,sys,tmp,dev,src/internal/loader}
cp "$(command -v busybox)" "$root/bin/busybox"
CGO_ENABLED=0 go test -c -o "$root/loader.test" ./internal/loader
cp -r testdata "$root/src/"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup
echo "VM kernel: $(uname -r)"
cd /src/internal/loader
/loader.test -test.run 'TestLoadPassesTheVerifier|TestLoadWithAttribution|TestVerifierRejection|TestDifferentialTestdata|TestFilterPassesTheVerifier' -test.v 2>&1
echo "VM-TESTS-EXIT=$?"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initrd.gz")

echo "kernel-vm: booting $pkg"
timeout 900 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 -kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1" -nographic -no-reboot -nic none </dev/null >"$work/vm.log" 2>&1 || true
grep -aE "VM kernel|^(---|===) |^    |VM-TESTS-EXIT|^(ok|PASS|FAIL)" "$work/vm.log" | tr -d '\r' || true
grep -aq "VM-TESTS-EXIT=0" "$work/vm.log" || { echo "kernel-vm: the tests did not pass on $pkg"; tail -c 3000 "$work/vm.log"; exit 1; }
echo "kernel-vm: passed on $pkg"
