#!/usr/bin/python
"""Ansible module amd_gpu_facts: AMD GPU facts from the KFD topology (logic in module_utils/amd_topology.py)."""

DOCUMENTATION = r"""
---
module: amd_gpu_facts
short_description: Gather facts about the AMD GPUs from the amdgpu driver's KFD topology
description:
  - Reads the KFD topology that the amdgpu kernel driver publishes under C(/sys/class/kfd/kfd/topology) (one node
    per CPU NUMA node and per GPU, with their memory banks and IO links) and the GPU device nodes under C(/dev)
    (C(/dev/kfd), C(/dev/dri/renderD<N>), C(/dev/dri/card<N>)).
  - Sets the fact C(amd_gpu) with the GPU count, each GPU's LLVM target, product name, VRAM, NUMA node, PCI address
    and render node, and the render nodes the driver announces but C(/dev) lacks.
  - Needs no ROCm user space; works before the ROCm packages are installed, and on a host without the driver
    it reports C(count=0) instead of failing, so that the calling role decides what is acceptable.
version_added: "1.0.0"
author:
  - GPU serving project
options:
  topology_root:
    description:
      - The KFD topology directory. Change it only to read a recorded or simulated topology in tests.
    type: path
    default: /sys/class/kfd/kfd/topology
  dev_root:
    description:
      - The directory that holds C(kfd) and C(dri/). Change it only in tests.
    type: path
    default: /dev
attributes:
  check_mode:
    support: full
    description: The module only reads; it returns the same facts in check mode.
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - A GPU is a topology node with SIMDs (C(simd_count) > 0) and a C(gfx_target_version); CPU NUMA nodes are not
    counted.
  - The LLVM target is derived from C(gfx_target_version) as the ROCm runtime does (major, then minor and stepping
    as one hex digit each), so 90402 is C(gfx942), 90500 C(gfx950) and 90010 C(gfx90a).
  - VRAM is the sum of the node's memory banks of the frame-buffer heap types (public and private).
  - The NUMA node is the CPU node that the GPU's IO link points to, or -1 when the topology has no such link.
seealso:
  - name: KFD topology in the Linux kernel (kfd_topology.c)
    description: Where the keys of the C(properties) files are defined.
    link: https://github.com/torvalds/linux/blob/master/drivers/gpu/drm/amd/amdkfd/kfd_topology.c
"""

EXAMPLES = r"""
- name: Gather the AMD GPU facts
  amd_gpu_facts:

- name: Require eight MI300-series GPUs with their render nodes
  ansible.builtin.assert:
    that:
      - amd_gpu.count == 8
      - amd_gpu.gfx_targets == ['gfx942']
      - amd_gpu.missing_render_nodes == []
    fail_msg: "{{ amd_gpu.count }} GPU(s), missing render nodes: {{ amd_gpu.missing_render_nodes }}"

- name: Read a recorded topology (tests)
  amd_gpu_facts:
    topology_root: "{{ playbook_dir }}/files/topology/mi300x-8gpu"
    dev_root: /tmp/fake-dev
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    amd_gpu:
      description: The AMD GPUs of the host.
      returned: always
      type: dict
      contains:
        kfd_present:
          description: Whether C(/dev/kfd) exists (the ROCm compute interface of the driver).
          type: bool
          sample: true
        topology_present:
          description: Whether the KFD topology exists, that is whether the amdgpu driver with KFD is loaded.
          type: bool
          sample: true
        topology_generation:
          description: The topology's C(generation_id); the driver bumps it when a GPU comes or goes.
          type: int
          sample: 9
        cpu_node_count:
          description: Number of CPU NUMA nodes in the topology.
          type: int
          sample: 2
        count:
          description: Number of GPUs (GPU agents; CPU nodes are not counted).
          type: int
          sample: 8
        gpus:
          description: One entry per GPU, in KFD node order.
          type: list
          elements: dict
          contains:
            node_id:
              description: The KFD topology node (rocminfo's C(Node), amd-smi's C(NODE_ID)).
              type: int
              sample: 2
            gpu_id:
              description: KFD's GPU id (amd-smi's C(KFD_ID)).
              type: int
              sample: 45412
            gfx_target:
              description: The LLVM target.
              type: str
              sample: gfx942
            gfx_target_version:
              description: The raw C(gfx_target_version) of the topology.
              type: int
              sample: 90402
            vendor_id:
              description: PCI vendor ID.
              type: str
              sample: "0x1002"
            device_id:
              description: PCI device ID.
              type: str
              sample: "0x74a1"
            marketing_name:
              description: Product name for the device ID, or C(Unknown AMD GPU (device 0x....)).
              type: str
              sample: AMD Instinct MI300X
            vram_bytes:
              description: VRAM in bytes.
              type: int
              sample: 206141652992
            numa_node:
              description: The NUMA node of the GPU, -1 when unknown.
              type: int
              sample: 0
            pci_bdf:
              description: PCI address (domain:bus:device.function).
              type: str
              sample: "0000:0c:00.0"
            location_id:
              description: KFD's C(location_id) (bus << 8 | devfn), rocminfo's C(BDFID).
              type: int
              sample: 3072
            domain:
              description: PCI domain.
              type: int
              sample: 0
            render_minor:
              description: The DRM render minor.
              type: int
              sample: 128
            render_node:
              description: Path of the render node.
              type: str
              sample: /dev/dri/renderD128
            render_node_present:
              description: Whether the render node exists.
              type: bool
              sample: true
            simd_count:
              description: Number of SIMDs.
              type: int
              sample: 1216
            compute_units:
              description: Number of compute units (SIMDs / SIMDs per CU).
              type: int
              sample: 304
            num_xcc:
              description: Number of accelerator complex dies (XCDs) in this partition.
              type: int
              sample: 8
            max_engine_clock_mhz:
              description: Maximum engine clock in MHz.
              type: int
              sample: 2100
            hive_id:
              description: XGMI hive the GPU belongs to (hex; 0 when none).
              type: str
              sample: "0x8e1b4bde0e3b1e2c"
            unique_id:
              description: The ASIC's unique id (hex), the serial behind rocminfo's and amd-smi's UUIDs.
              type: str
              sample: "0x8af705259683161c"
        gfx_targets:
          description: The distinct LLVM targets, sorted.
          type: list
          elements: str
          sample: [gfx942]
        marketing_names:
          description: The distinct product names, in GPU order.
          type: list
          elements: str
          sample: [AMD Instinct MI300X]
        vram_bytes_min:
          description: The smallest VRAM of any GPU, 0 without GPUs.
          type: int
          sample: 206141652992
        vram_bytes_total:
          description: The VRAM of all GPUs together.
          type: int
          sample: 1649133223936
        render_nodes:
          description: The render node of every GPU, in GPU order.
          type: list
          elements: str
          sample: [/dev/dri/renderD128, /dev/dri/renderD129]
        missing_render_nodes:
          description: Render nodes of GPUs in the topology that C(/dev) lacks.
          type: list
          elements: str
          sample: []
        card_nodes:
          description: The DRM primary nodes present in C(/dev/dri), in minor order (all vendors).
          type: list
          elements: str
          sample: [/dev/dri/card0, /dev/dri/card1]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.amd_topology import (
    DEFAULT_DEV_ROOT,
    DEFAULT_TOPOLOGY_ROOT,
    TopologyError,
    collect_gpu_facts,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            topology_root=dict(type="path", default=DEFAULT_TOPOLOGY_ROOT),
            dev_root=dict(type="path", default=DEFAULT_DEV_ROOT),
        ),
        supports_check_mode=True,
    )
    try:
        facts = collect_gpu_facts(module.params["topology_root"], module.params["dev_root"])
    except TopologyError as error:
        module.fail_json(msg=f"Cannot read the KFD topology: {error}")
    module.exit_json(changed=False, ansible_facts={"amd_gpu": facts})


if __name__ == "__main__":
    main()
