#!/usr/bin/python
"""Ansible module amd_gpu_facts: AMD GPU facts from the KFD topology, or from the PCI bus before the driver is loaded
(logic in module_utils/amd_topology.py)."""

DOCUMENTATION = r"""
---
module: amd_gpu_facts
short_description: Gather facts about the AMD GPUs from the amdgpu driver's KFD topology or the PCI bus
description:
  - Reads the KFD topology that the amdgpu kernel driver publishes under C(/sys/class/kfd/kfd/topology) (one node
    per CPU NUMA node and per GPU, with their memory banks and IO links) and the GPU device nodes under C(/dev)
    (C(/dev/kfd), C(/dev/dri/renderD<N>), C(/dev/dri/card<N>)).
  - Also reads the PCI bus (C(/sys/bus/pci/devices)). When the KFD topology lists no GPU (a fresh server before
    the C(rocm) role installs C(amdgpu-dkms), or a loaded driver that does not drive these GPUs), the GPUs come
    from the PCI bus instead, so that the GPU model and count can be checked before the driver exists.
  - Sets the fact C(amd_gpu) with where the GPUs were found (C(source)), the GPU count, each GPU's LLVM target,
    product name, VRAM, NUMA node, PCI address and render node, the render nodes the driver announces but C(/dev)
    lacks, and the number of AMD GPUs on the PCI bus; and C(amd_gpu_source) with the source alone.
  - Needs no ROCm user space; works before the ROCm packages are installed, and on a host without GPUs it
    reports C(count=0) instead of failing, so that the calling role decides what is acceptable.
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
  pci_root:
    description:
      - The directory with one entry per PCI function, named by its address. Change it only in tests.
    type: path
    default: /sys/bus/pci/devices
attributes:
  check_mode:
    support: full
    description: The module only reads; it returns the same facts in check mode.
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - The source is C(kfd) when the KFD topology lists at least one GPU, else C(pci) when the PCI bus shows AMD GPUs,
    else C(none). KFD wins because only the driver knows VRAM, compute units and render nodes; a topology with CPU
    nodes only does not hide the GPUs on the PCI bus.
  - In the KFD topology a GPU is a node with SIMDs (C(simd_count) > 0) and a C(gfx_target_version); CPU NUMA nodes
    are not counted. A compute-partitioned GPU (CPX) is one node per partition, so C(count) can exceed
    C(pci_count).
  - On the PCI bus a GPU is a function of vendor 0x1002 in one of the classes the amdgpu driver binds (0x030000
    VGA, 0x038000 other display controller, 0x120000 processing accelerator; MI300X reports 0x120000). Other
    vendors' GPUs (a BMC's VGA), AMD's audio functions and PCIe switch ports, and SR-IOV virtual functions of a
    physical GPU on the same host are not counted.
  - From the PCI bus alone the LLVM target and product name come from a table of device IDs (MI100 to MI355X),
    and the VRAM is unknown (C(vram_bytes) and C(vram_bytes_min) are null); C(vram_gib_spec) gives the model's
    VRAM from AMD's specification table (ROCm documentation, AMD GPU specifications) where it has one. A device
    the table lacks has a null C(gfx_target) and is listed in C(unidentified_device_ids).
  - The LLVM target is derived from C(gfx_target_version) as the ROCm runtime does (major, then minor and stepping
    as one hex digit each), so 90402 is C(gfx942), 90500 C(gfx950) and 90010 C(gfx90a).
  - VRAM is the sum of the node's memory banks of the frame-buffer heap types (public and private).
  - The NUMA node is the CPU node that the GPU's IO link points to, or -1 when the topology has no such link.
seealso:
  - name: KFD topology in the Linux kernel (kfd_topology.c)
    description: Where the keys of the C(properties) files are defined.
    link: https://github.com/torvalds/linux/blob/master/drivers/gpu/drm/amd/amdkfd/kfd_topology.c
  - name: PCI devices in sysfs (Linux ABI sysfs-bus-pci)
    description: The C(vendor), C(device), C(class), C(numa_node), C(driver) and C(physfn) entries read on the bus.
    link: https://www.kernel.org/doc/Documentation/ABI/testing/sysfs-bus-pci
  - name: AMD GPU specifications (ROCm documentation)
    description: LLVM target and VRAM of each AMD Instinct model, the source of C(vram_gib_spec).
    link: https://rocm.docs.amd.com/en/latest/reference/gpu-specs.html
"""

EXAMPLES = r"""
- name: Gather the AMD GPU facts
  amd_gpu_facts:

- name: Require eight MI300-series GPUs with their render nodes
  ansible.builtin.assert:
    that:
      - amd_gpu_source == 'kfd'
      - amd_gpu.count == 8
      - amd_gpu.gfx_targets == ['gfx942']
      - amd_gpu.missing_render_nodes == []
    fail_msg: >-
      {{ amd_gpu.count }} GPU(s) from {{ amd_gpu_source }}, missing render nodes: {{ amd_gpu.missing_render_nodes }}

- name: Say when the GPUs are there but the driver is not
  ansible.builtin.debug:
    msg: "{{ amd_gpu.pci_count }} GPUs on the PCI bus but no KFD: the amdgpu driver is not loaded"
  when: amd_gpu_source == 'pci'

- name: Read a recorded topology and PCI bus (tests)
  amd_gpu_facts:
    topology_root: "{{ playbook_dir }}/files/topology/mi300x-8gpu"
    dev_root: /tmp/fake-dev
    pci_root: /tmp/fake-sys/bus/pci/devices
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    amd_gpu_source:
      description: Where the GPUs were found, the same as C(amd_gpu.source).
      returned: always
      type: str
      choices: [kfd, pci, none]
      sample: kfd
    amd_gpu:
      description: The AMD GPUs of the host.
      returned: always
      type: dict
      contains:
        source:
          description:
            - C(kfd) when the KFD topology lists GPUs; C(pci) when it does not (the amdgpu driver is not loaded, or
              drives none of them) but the PCI bus shows AMD GPUs; C(none) when neither shows any.
            - With C(pci) the fields only the driver knows are null (see the notes).
          type: str
          choices: [kfd, pci, none]
          sample: kfd
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
          description: Number of GPUs from the source (KFD GPU agents, or AMD GPUs on the PCI bus); CPU nodes are
            not counted.
          type: int
          sample: 8
        pci_count:
          description: Number of AMD GPUs on the PCI bus (physical functions), whatever the source; more than
            C(count) with source C(kfd) means GPUs the driver did not bring up.
          type: int
          sample: 8
        gpus:
          description: One entry per GPU, in KFD node order (source C(kfd)) or PCI address order (source C(pci)).
          type: list
          elements: dict
          contains:
            node_id:
              description: The KFD topology node (rocminfo's C(Node), amd-smi's C(NODE_ID)); null from the PCI bus.
              type: int
              sample: 2
            gpu_id:
              description: KFD's GPU id (amd-smi's C(KFD_ID)); null from the PCI bus.
              type: int
              sample: 45412
            gfx_target:
              description: The LLVM target; from the PCI bus, the device ID's, or null for a device the module does
                not know.
              type: str
              sample: gfx942
            gfx_target_version:
              description: The raw C(gfx_target_version) of the topology; null from the PCI bus.
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
              description: VRAM in bytes as the driver reports it (a little under the nominal size); null from the
                PCI bus, which does not tell it.
              type: int
              sample: 206141652992
            vram_gib_spec:
              description: The model's VRAM in GiB from AMD's specification table (ROCm documentation, AMD GPU
                specifications), null for a model the table lacks (variants, virtual functions, MI250/MI250X whose
                figure is per two-GPU package).
              type: int
              sample: 192
            numa_node:
              description: The NUMA node of the GPU (KFD's IO link, or the PCI function's C(numa_node)), -1 when
                unknown.
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
              description: The DRM render minor; null from the PCI bus.
              type: int
              sample: 128
            render_node:
              description: Path of the render node; null from the PCI bus.
              type: str
              sample: /dev/dri/renderD128
            render_node_present:
              description: Whether the render node exists; null from the PCI bus.
              type: bool
              sample: true
            simd_count:
              description: Number of SIMDs; null from the PCI bus.
              type: int
              sample: 1216
            compute_units:
              description: Number of compute units (SIMDs / SIMDs per CU); null from the PCI bus.
              type: int
              sample: 304
            num_xcc:
              description: Number of accelerator complex dies (XCDs) in this partition; null from the PCI bus.
              type: int
              sample: 8
            max_engine_clock_mhz:
              description: Maximum engine clock in MHz; null from the PCI bus.
              type: int
              sample: 2100
            hive_id:
              description: XGMI hive the GPU belongs to (hex; 0 when none); null from the PCI bus.
              type: str
              sample: "0x8e1b4bde0e3b1e2c"
            unique_id:
              description: The ASIC's unique id (hex), the serial behind rocminfo's and amd-smi's UUIDs; null from
                the PCI bus.
              type: str
              sample: "0x8af705259683161c"
            pci_class:
              description: The PCI function's class code (hex), null when the PCI bus does not list the GPU.
              type: str
              sample: "0x120000"
            subsystem_device:
              description: The PCI subsystem device ID (hex), null when the PCI bus does not list the GPU.
              type: str
              sample: "0x74a1"
            revision:
              description: The PCI revision ID (hex), null when the PCI bus does not list the GPU.
              type: str
              sample: "0x00"
            driver:
              description: The kernel driver bound to the PCI function (C(amdgpu), C(vfio-pci), ...), null when
                none is bound or the PCI bus does not list the GPU.
              type: str
              sample: amdgpu
        gfx_targets:
          description: The distinct LLVM targets, sorted (unknown ones left out, see C(unidentified_device_ids)).
          type: list
          elements: str
          sample: [gfx942]
        unidentified_device_ids:
          description: PCI device IDs of GPUs whose LLVM target is unknown, which happens only with source C(pci)
            for a device the module's table lacks.
          type: list
          elements: str
          sample: []
        marketing_names:
          description: The distinct product names, in GPU order.
          type: list
          elements: str
          sample: [AMD Instinct MI300X]
        vram_bytes_min:
          description: The smallest VRAM of any GPU, 0 without GPUs, null with source C(pci).
          type: int
          sample: 206141652992
        vram_bytes_total:
          description: The VRAM of all GPUs together, null with source C(pci).
          type: int
          sample: 1649133223936
        render_nodes:
          description: The render node of every GPU, in GPU order; empty with source C(pci).
          type: list
          elements: str
          sample: [/dev/dri/renderD128, /dev/dri/renderD129]
        missing_render_nodes:
          description: Render nodes of GPUs in the topology that C(/dev) lacks; empty with source C(pci).
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
    DEFAULT_PCI_ROOT,
    DEFAULT_TOPOLOGY_ROOT,
    TopologyError,
    collect_gpu_facts,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            topology_root=dict(type="path", default=DEFAULT_TOPOLOGY_ROOT),
            dev_root=dict(type="path", default=DEFAULT_DEV_ROOT),
            pci_root=dict(type="path", default=DEFAULT_PCI_ROOT),
        ),
        supports_check_mode=True,
    )
    try:
        facts = collect_gpu_facts(module.params["topology_root"], module.params["dev_root"], module.params["pci_root"])
    except TopologyError as error:
        module.fail_json(msg=f"Cannot read the KFD topology: {error}")
    module.exit_json(changed=False, ansible_facts={"amd_gpu": facts, "amd_gpu_source": facts["source"]})


if __name__ == "__main__":
    main()
