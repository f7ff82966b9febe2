"""Read the AMD KFD topology the amdgpu driver publishes in sysfs, and the GPU device nodes in /dev.

Pure functions over paths, so that the amd_gpu_facts module, the unit tests and the simulated node's tests can
use them against any tree. The layout and keys are the kernel's (drivers/gpu/drm/amd/amdkfd/kfd_topology.c):

    <topology>/generation_id                      an integer, bumped on every hot-plug
    <topology>/system_properties                  "platform_oem N" ... lines
    <topology>/nodes/<id>/properties              "key value" lines, one node per CPU NUMA node or GPU
    <topology>/nodes/<id>/{name,gpu_id}           the ASIC name ("ip discovery") and KFD's GPU id (0 for CPUs)
    <topology>/nodes/<id>/mem_banks/<n>/properties
    <topology>/nodes/<id>/io_links/<n>/properties
"""

import os

DEFAULT_TOPOLOGY_ROOT = "/sys/class/kfd/kfd/topology"
DEFAULT_DEV_ROOT = "/dev"

# HSA heap types of a memory bank: 1 and 2 are the GPU's frame buffer (VRAM), public (CPU-visible) or private.
HEAP_TYPE_FB_PUBLIC = 1
HEAP_TYPE_FB_PRIVATE = 2
VRAM_HEAP_TYPES = (HEAP_TYPE_FB_PUBLIC, HEAP_TYPE_FB_PRIVATE)

AMD_VENDOR_ID = 0x1002

# PCI device ID -> product name, as libdrm's amdgpu.ids and AMD's tools name them (the MI300/MI350 series).
MARKETING_NAMES = {
    0x74A0: "AMD Instinct MI300A",
    0x74A1: "AMD Instinct MI300X",
    0x74A2: "AMD Instinct MI308X",
    0x74A5: "AMD Instinct MI325X",
    0x74A9: "AMD Instinct MI300X HF",
    0x74B5: "AMD Instinct MI300X VF",
    0x74B6: "AMD Instinct MI308X",
    0x74BD: "AMD Instinct MI300X HF",
    0x75A0: "AMD Instinct MI350X",
    0x75A3: "AMD Instinct MI355X",
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
    return MARKETING_NAMES.get(device_id, f"Unknown AMD GPU (device 0x{device_id:04x})")


def pci_bdf(domain, location_id):
    """KFD's location_id is the PCI devid (bus << 8 | device << 3 | function); domain is separate."""
    return f"{domain:04x}:{(location_id >> 8) & 0xFF:02x}:{(location_id >> 3) & 0x1F:02x}.{location_id & 0x7:x}"


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


def gpu_record(node, cpu_node_ids, dev_root):
    properties = node["properties"]
    simd_per_cu = properties.get("simd_per_cu", 0)
    render_minor = properties.get("drm_render_minor", 0)
    render_node = render_node_path(dev_root, render_minor)
    return {
        "node_id": node["id"],
        "gpu_id": node["gpu_id"],
        "gfx_target": gfx_target_name(properties["gfx_target_version"]),
        "gfx_target_version": properties["gfx_target_version"],
        "vendor_id": f"0x{properties.get('vendor_id', 0):04x}",
        "device_id": f"0x{properties.get('device_id', 0):04x}",
        "marketing_name": marketing_name(properties.get("device_id", 0)),
        "vram_bytes": vram_bytes(node),
        "numa_node": numa_node(node, cpu_node_ids),
        "pci_bdf": pci_bdf(properties.get("domain", 0), properties.get("location_id", 0)),
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


def collect_gpu_facts(topology_root=DEFAULT_TOPOLOGY_ROOT, dev_root=DEFAULT_DEV_ROOT):
    """The amd_gpu facts: what the KFD topology and /dev say about the GPUs. Never fails for a host without
    GPUs or without the driver (count 0); raises TopologyError only for a topology that cannot be read."""
    topology = read_topology(topology_root)
    nodes = topology["nodes"] if topology else []
    cpu_node_ids = {node["id"] for node in nodes if is_cpu(node)}
    gpus = [gpu_record(node, cpu_node_ids, dev_root) for node in nodes if is_gpu(node)]
    return {
        "kfd_present": os.path.exists(os.path.join(dev_root, "kfd")),
        "topology_present": topology is not None,
        "topology_generation": topology["generation_id"] if topology else 0,
        "cpu_node_count": len(cpu_node_ids),
        "count": len(gpus),
        "gpus": gpus,
        "gfx_targets": sorted(set(gpu["gfx_target"] for gpu in gpus)),
        "marketing_names": _unique(gpu["marketing_name"] for gpu in gpus),
        "vram_bytes_min": min((gpu["vram_bytes"] for gpu in gpus), default=0),
        "vram_bytes_total": sum(gpu["vram_bytes"] for gpu in gpus),
        "render_nodes": [gpu["render_node"] for gpu in gpus],
        "missing_render_nodes": [gpu["render_node"] for gpu in gpus if not gpu["render_node_present"]],
        "card_nodes": card_nodes(dev_root),
    }
