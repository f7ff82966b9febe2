"""Find a host's AMD GPUs in sysfs: in the KFD topology the amdgpu driver publishes, or, before that driver is
loaded, on the PCI bus. Also the GPU device nodes in /dev.

Pure functions over paths, so that the amd_gpu_facts module, the unit tests and the simulated node's tests can
use them against any tree. The KFD layout and keys are the kernel's (drivers/gpu/drm/amd/amdkfd/kfd_topology.c):

    <topology>/generation_id                      an integer, bumped on every hot-plug
    <topology>/system_properties                  "platform_oem N" ... lines
    <topology>/nodes/<id>/properties              "key value" lines, one node per CPU NUMA node or GPU
    <topology>/nodes/<id>/{name,gpu_id}           the ASIC name ("ip discovery") and KFD's GPU id (0 for CPUs)
    <topology>/nodes/<id>/mem_banks/<n>/properties
    <topology>/nodes/<id>/io_links/<n>/properties

The PCI bus is the kernel's sysfs-bus-pci ABI, one directory per function:

    <pci>/<domain:bus:device.function>/{vendor,device,class,subsystem_vendor,subsystem_device,revision}
                                                  hex: 0x1002, 0x74a1, 0x120000, 0x1002, 0x74a1, 0x00
    <pci>/<bdf>/numa_node                         decimal, -1 without NUMA information
    <pci>/<bdf>/driver                            symlink to the bound driver; absent when none is bound
    <pci>/<bdf>/physfn                            symlink to the physical function, on an SR-IOV virtual function
"""

import os
import re
from typing import NamedTuple, Optional

DEFAULT_TOPOLOGY_ROOT = "/sys/class/kfd/kfd/topology"
DEFAULT_DEV_ROOT = "/dev"
DEFAULT_PCI_ROOT = "/sys/bus/pci/devices"

# HSA heap types of a memory bank: 1 and 2 are the GPU's frame buffer (VRAM), public (CPU-visible) or private.
HEAP_TYPE_FB_PUBLIC = 1
HEAP_TYPE_FB_PRIVATE = 2
VRAM_HEAP_TYPES = (HEAP_TYPE_FB_PUBLIC, HEAP_TYPE_FB_PRIVATE)

AMD_VENDOR_ID = 0x1002
# The 24-bit PCI classes (class, subclass, programming interface) that amdgpu binds for vendor 0x1002: its
# pciidlist matches PCI_CLASS_DISPLAY_VGA, PCI_CLASS_DISPLAY_OTHER and PCI_CLASS_ACCELERATOR_PROCESSING with
# class_mask 0xffffff. MI300X reports 0x120000 ("Processing accelerators"), MI200 0x038000.
AMDGPU_PCI_CLASSES = (0x030000, 0x038000, 0x120000)
PCI_ADDRESS = re.compile(r"^([0-9a-f]{4,}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")


class GpuModel(NamedTuple):
    marketing_name: str
    gfx_target: str
    vram_gib: Optional[int]


# PCI device ID -> model. Names: libdrm's amdgpu.ids and pci.ids. LLVM target and VRAM in GiB: the "AMD GPU
# specifications" table of the ROCm documentation (reference/gpu-specs). Variants that table has no row for (HF,
# MI308X, virtual functions) take their base model's target and no VRAM. MI250/MI250X have none either: the table
# gives the package's 128 GiB, but each of its two dies is a PCI device and a GPU of its own.
GPU_MODELS = {
    0x738C: GpuModel("AMD Instinct MI100", "gfx908", 32),
    0x738E: GpuModel("AMD Instinct MI100", "gfx908", 32),
    0x7408: GpuModel("AMD Instinct MI250X", "gfx90a", None),
    0x740C: GpuModel("AMD Instinct MI250X / MI250", "gfx90a", None),
    0x740F: GpuModel("AMD Instinct MI210", "gfx90a", 64),
    0x74A0: GpuModel("AMD Instinct MI300A", "gfx942", 128),
    0x74A1: GpuModel("AMD Instinct MI300X", "gfx942", 192),
    0x74A2: GpuModel("AMD Instinct MI308X", "gfx942", None),
    0x74A5: GpuModel("AMD Instinct MI325X", "gfx942", 256),
    0x74A9: GpuModel("AMD Instinct MI300X HF", "gfx942", None),
    0x74B5: GpuModel("AMD Instinct MI300X VF", "gfx942", None),
    0x74B6: GpuModel("AMD Instinct MI308X", "gfx942", None),
    0x74B9: GpuModel("AMD Instinct MI325X VF", "gfx942", None),
    0x74BD: GpuModel("AMD Instinct MI300X HF", "gfx942", None),
    0x75A0: GpuModel("AMD Instinct MI350X", "gfx950", 288),
    0x75A3: GpuModel("AMD Instinct MI355X", "gfx950", 288),
}


class TopologyError(Exception):
    """The topology exists but a file in it cannot be read or parsed."""


def parse_properties(text):
    """KFD "key value" lines as a dict of ints; lines whose value is not one integer (sibling_map) are skipped."""
    properties = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                properties[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return properties


def read_text(path):
    """sysfs attributes are ASCII; an unreadable one raises OSError (EPERM for a GPU a device cgroup hides)."""
    with open(path, encoding="ascii") as handle:
        return handle.read()


def read_properties(path):
    try:
        return parse_properties(read_text(path))
    except (OSError, UnicodeDecodeError) as error:
        raise TopologyError(f"cannot read {path}: {error}") from error


def _read_int(path, default=0):
    try:
        return int(read_text(path).strip() or default)
    except (OSError, ValueError):
        return default


def _numbered_entries(directory):
    """Subdirectory names that are integers, in numeric order (sysfs lists 10 before 2)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def gfx_target_name(gfx_target_version):
    """The LLVM target of a KFD gfx_target_version (major*10000 + minor*100 + stepping), as ROCr spells it.

    Minor and stepping are single hex digits in the name: 90010 -> gfx90a, 90402 -> gfx942, 90500 -> gfx950,
    100100 -> gfx1010, 110001 -> gfx1101. CPU nodes have version 0 and no target (None).
    """
    if not gfx_target_version:
        return None
    major, rest = divmod(gfx_target_version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


def marketing_name(device_id):
    model = GPU_MODELS.get(device_id)
    return model.marketing_name if model else f"Unknown AMD GPU (device 0x{device_id:04x})"


def pci_bdf(domain, location_id):
    """KFD's location_id is the PCI devid (bus << 8 | device << 3 | function); domain is separate."""
    return f"{domain:04x}:{(location_id >> 8) & 0xFF:02x}:{(location_id >> 3) & 0x1F:02x}.{location_id & 0x7:x}"


def parse_pci_address(address):
    """(domain, location_id) of a sysfs PCI address such as 0000:0c:00.0, or None for another name."""
    match = PCI_ADDRESS.match(address)
    if not match:
        return None
    domain, bus, device, function = (int(field, 16) for field in match.groups())
    return domain, bus << 8 | device << 3 | function


def read_node(node_dir):
    """One topology node: its properties, gpu_id, memory banks and IO links."""
    return {
        "id": int(os.path.basename(node_dir)),
        "properties": read_properties(os.path.join(node_dir, "properties")),
        "gpu_id": _read_int(os.path.join(node_dir, "gpu_id")),
        "mem_banks": [read_properties(os.path.join(node_dir, "mem_banks", str(n), "properties"))
                      for n in _numbered_entries(os.path.join(node_dir, "mem_banks"))],
        "io_links": [read_properties(os.path.join(node_dir, "io_links", str(n), "properties"))
                     for n in _numbered_entries(os.path.join(node_dir, "io_links"))],
    }


def read_topology(topology_root):
    """The generation and all nodes in node-id order, or None without a topology (the driver is not loaded)."""
    nodes_dir = os.path.join(topology_root, "nodes")
    if not os.path.isdir(nodes_dir):
        return None
    return {
        "generation_id": _read_int(os.path.join(topology_root, "generation_id")),
        "nodes": [read_node(os.path.join(nodes_dir, str(node_id))) for node_id in _numbered_entries(nodes_dir)],
    }


def _read_hex(path):
    try:
        return int(read_text(path).strip(), 16)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _link_target_name(path):
    """The last component of a sysfs symlink's target (a driver's name), or None without the link."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def read_pci_function(function_dir):
    """The identity of one PCI function, or None when its IDs cannot be read."""
    vendor_id, device_id, pci_class = (_read_hex(os.path.join(function_dir, name))
                                       for name in ("vendor", "device", "class"))
    if None in (vendor_id, device_id, pci_class):
        return None
    return {
        "bdf": os.path.basename(function_dir),
        "vendor_id": vendor_id,
        "device_id": device_id,
        "pci_class": pci_class,
        "subsystem_device": _read_hex(os.path.join(function_dir, "subsystem_device")),
        "revision": _read_hex(os.path.join(function_dir, "revision")),
        "numa_node": _read_int(os.path.join(function_dir, "numa_node"), default=-1),
        "driver": _link_target_name(os.path.join(function_dir, "driver")),
        "virtual_function": os.path.lexists(os.path.join(function_dir, "physfn")),
    }


def is_amd_gpu_function(function):
    return function["vendor_id"] == AMD_VENDOR_ID and function["pci_class"] in AMDGPU_PCI_CLASSES


def read_pci_gpus(pci_root):
    """The AMD GPUs on the PCI bus in address order, whether or not a driver is bound to them.

    A GPU is a function of vendor 0x1002 in a class amdgpu binds (so not the GPUs' audio functions or AMD's PCIe
    switch ports). SR-IOV virtual functions of a physical function on this host are left out: they are slices of
    a GPU already counted. In a virtual machine a passed-through VF has no physfn link and counts.
    """
    try:
        names = os.listdir(pci_root)
    except OSError:
        return []
    functions = (read_pci_function(os.path.join(pci_root, name))
                 for name in sorted(names) if parse_pci_address(name))
    return [function for function in functions
            if function and is_amd_gpu_function(function) and not function["virtual_function"]]


def _hex_or_none(value, digits):
    return None if value is None else f"0x{value:0{digits}x}"


def pci_details(function):
    """What the PCI bus adds to a GPU record: all None when the GPU's function is not known."""
    function = function or {}
    return {
        "pci_class": _hex_or_none(function.get("pci_class"), 6),
        "subsystem_device": _hex_or_none(function.get("subsystem_device"), 4),
        "revision": _hex_or_none(function.get("revision"), 2),
        "driver": function.get("driver"),
    }


def is_gpu(node):
    """A GPU agent has SIMDs; a CPU NUMA node has simd_count 0 and gfx_target_version 0."""
    properties = node["properties"]
    return properties.get("simd_count", 0) > 0 and properties.get("gfx_target_version", 0) != 0


def is_cpu(node):
    return node["properties"].get("cpu_cores_count", 0) > 0 and not is_gpu(node)


def vram_bytes(node):
    return sum(bank.get("size_in_bytes", 0) for bank in node["mem_banks"] if bank.get("heap_type") in VRAM_HEAP_TYPES)


def numa_node(node, cpu_node_ids):
    """The CPU node a GPU hangs off: the target of its lightest IO link to a CPU node, or -1 when it has none."""
    links = [link for link in node["io_links"] if link.get("node_to") in cpu_node_ids]
    if not links:
        return -1
    return min(links, key=lambda link: (link.get("weight", 0), link["node_to"]))["node_to"]


def render_node_path(dev_root, render_minor):
    return os.path.join(dev_root, "dri", f"renderD{render_minor}")


def _spec_vram_gib(device_id):
    model = GPU_MODELS.get(device_id)
    return model.vram_gib if model else None


def gpu_record(node, cpu_node_ids, dev_root, pci_functions):
    """A GPU as the KFD topology describes it, with its PCI function's details when the bus lists it."""
    properties = node["properties"]
    simd_per_cu = properties.get("simd_per_cu", 0)
    render_minor = properties.get("drm_render_minor", 0)
    render_node = render_node_path(dev_root, render_minor)
    device_id = properties.get("device_id", 0)
    bdf = pci_bdf(properties.get("domain", 0), properties.get("location_id", 0))
    return {
        "node_id": node["id"],
        "gpu_id": node["gpu_id"],
        "gfx_target": gfx_target_name(properties["gfx_target_version"]),
        "gfx_target_version": properties["gfx_target_version"],
        "vendor_id": f"0x{properties.get('vendor_id', 0):04x}",
        "device_id": f"0x{device_id:04x}",
        "marketing_name": marketing_name(device_id),
        "vram_bytes": vram_bytes(node),
        "vram_gib_spec": _spec_vram_gib(device_id),
        "numa_node": numa_node(node, cpu_node_ids),
        "pci_bdf": bdf,
        "location_id": properties.get("location_id", 0),
        "domain": properties.get("domain", 0),
        "render_minor": render_minor,
        "render_node": render_node,
        "render_node_present": os.path.exists(render_node),
        "simd_count": properties["simd_count"],
        "compute_units": properties["simd_count"] // simd_per_cu if simd_per_cu else 0,
        "num_xcc": properties.get("num_xcc", 0),
        "max_engine_clock_mhz": properties.get("max_engine_clk_fcompute", 0),
        "hive_id": f"0x{properties.get('hive_id', 0):016x}",
        "unique_id": f"0x{properties.get('unique_id', 0):016x}",
        **pci_details(pci_functions.get(bdf)),
    }


def pci_gpu_record(function):
    """A GPU as the PCI bus alone describes it: what only the driver knows (VRAM, KFD ids, render node, compute
    units) is None, and the LLVM target comes from the device ID (None for a device GPU_MODELS lacks)."""
    model = GPU_MODELS.get(function["device_id"])
    domain, location_id = parse_pci_address(function["bdf"])
    return {
        "node_id": None,
        "gpu_id": None,
        "gfx_target": model.gfx_target if model else None,
        "gfx_target_version": None,
        "vendor_id": f"0x{function['vendor_id']:04x}",
        "device_id": f"0x{function['device_id']:04x}",
        "marketing_name": marketing_name(function["device_id"]),
        "vram_bytes": None,
        "vram_gib_spec": model.vram_gib if model else None,
        "numa_node": function["numa_node"],
        "pci_bdf": function["bdf"],
        "location_id": location_id,
        "domain": domain,
        "render_minor": None,
        "render_node": None,
        "render_node_present": None,
        "simd_count": None,
        "compute_units": None,
        "num_xcc": None,
        "max_engine_clock_mhz": None,
        "hive_id": None,
        "unique_id": None,
        **pci_details(function),
    }


def card_nodes(dev_root):
    """The DRM primary nodes present (/dev/dri/card<N>), in minor order. KFD does not say which is whose."""
    dri_dir = os.path.join(dev_root, "dri")
    if not os.path.isdir(dri_dir):
        return []
    minors = sorted(int(name[4:]) for name in os.listdir(dri_dir) if name.startswith("card") and name[4:].isdigit())
    return [os.path.join(dri_dir, f"card{minor}") for minor in minors]


def _unique(values):
    return list(dict.fromkeys(values))


def collect_gpu_facts(topology_root=DEFAULT_TOPOLOGY_ROOT, dev_root=DEFAULT_DEV_ROOT, pci_root=None):
    """The amd_gpu facts. The GPUs come from the KFD topology when it lists any (source "kfd"), else from the PCI
    bus (source "pci": the driver is not loaded, or drives none of them), else there are none (source "none").

    pci_root None leaves the PCI bus unread (pci_count 0, no PCI fallback). Never fails for a host without GPUs
    or without the driver; raises TopologyError only for a topology that cannot be read.
    """
    topology = read_topology(topology_root)
    nodes = topology["nodes"] if topology else []
    cpu_node_ids = {node["id"] for node in nodes if is_cpu(node)}
    pci_gpus = read_pci_gpus(pci_root) if pci_root else []
    pci_by_address = {function["bdf"]: function for function in pci_gpus}
    gpus = [gpu_record(node, cpu_node_ids, dev_root, pci_by_address) for node in nodes if is_gpu(node)]
    source = "kfd"
    if not gpus:
        gpus = [pci_gpu_record(function) for function in pci_gpus]
        source = "pci" if gpus else "none"
    vram_known = source != "pci"
    return {
        "source": source,
        "kfd_present": os.path.exists(os.path.join(dev_root, "kfd")),
        "topology_present": topology is not None,
        "topology_generation": topology["generation_id"] if topology else 0,
        "cpu_node_count": len(cpu_node_ids),
        "count": len(gpus),
        "pci_count": len(pci_gpus),
        "gpus": gpus,
        "gfx_targets": sorted(set(gpu["gfx_target"] for gpu in gpus if gpu["gfx_target"])),
        "unidentified_device_ids": _unique(gpu["device_id"] for gpu in gpus if not gpu["gfx_target"]),
        "marketing_names": _unique(gpu["marketing_name"] for gpu in gpus),
        "vram_bytes_min": min((gpu["vram_bytes"] for gpu in gpus), default=0) if vram_known else None,
        "vram_bytes_total": sum(gpu["vram_bytes"] for gpu in gpus) if vram_known else None,
        "render_nodes": [gpu["render_node"] for gpu in gpus if gpu["render_node"]],
        "missing_render_nodes": [gpu["render_node"] for gpu in gpus if gpu["render_node_present"] is False],
        "card_nodes": card_nodes(dev_root),
    }
