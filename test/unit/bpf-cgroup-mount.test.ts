/** findCgroup2Mount on sample /proc/self/mountinfo texts (proc(5): fields, " - " separator, octal escapes). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BpfError, findCgroup2Mount } from "../../src/bpf/index.js";

const hybrid = `22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const unified = `24 1 0:22 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
33 24 0:29 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf bpf rw,mode=700
`;
const escaped = `24 1 0:22 / / rw - ext4 /dev/sda1 rw
50 24 0:40 / /mnt/my\\040cgroups\\011v2 rw,relatime shared:30 - cgroup2 none rw
`;
const noOptionalFields = `50 24 0:40 / /run/cg2 rw - cgroup2 none rw\n`;
// A cgroup v1 hierarchy named "cgroup2" must not fool the parser: the fstype decides.
const v1Only = `22 1 253:1 / / rw,relatime - ext4 /dev/vda rw
32 31 0:29 / /sys/fs/cgroup/cgroup2 rw,relatime - cgroup cgroup rw,cpu
`;

test("findCgroup2Mount reads the cgroup2 mount point from mountinfo", async (t) => {
  const cases = [
    { name: "hybrid layout (systemd v1 + unified)", have: hybrid, want: "/sys/fs/cgroup/unified" },
    { name: "unified layout", have: unified, want: "/sys/fs/cgroup" },
    { name: "escaped space and tab in the path", have: escaped, want: "/mnt/my cgroups\tv2" },
    { name: "no optional fields", have: noOptionalFields, want: "/run/cg2" },
  ];
  for (const c of cases) {
    await t.test(c.name, () => assert.equal(findCgroup2Mount(c.have), c.want));
  }
});

test("findCgroup2Mount without a cgroup2 mount names the fix", async (t) => {
  for (const [name, have] of [
    ["empty", ""],
    ["only cgroup v1", v1Only],
  ] as const) {
    await t.test(name, () => {
      assert.throws(() => findCgroup2Mount(have, "nodev\tcgroup\n"), (e: unknown) => {
        assert.ok(e instanceof BpfError);
        assert.equal(e.code, "BPF_ERR_CGROUP");
        assert.match(e.message, /no cgroup v2 mount/);
        assert.match(e.message, /mount -t cgroup2 none \/sys\/fs\/cgroup\/unified/);
        return true;
      });
    });
  }
});

test("findCgroup2Mount where the kernel has cgroup2 but /sys was remounted (ip netns exec) says so and how to run instead", () => {
  assert.throws(() => findCgroup2Mount(v1Only, "nodev\tsysfs\nnodev\tcgroup\nnodev\tcgroup2\n"), (e: unknown) => {
    assert.ok(e instanceof BpfError);
    assert.equal(e.code, "BPF_ERR_CGROUP");
    assert.match(e.message, /though the kernel has cgroup v2 .*`ip netns exec` remounts \/sys.*nsenter --net=\/run\/netns\/NAME/);
    assert.doesNotMatch(e.message, /not supported by this kernel/);
    return true;
  });
});
