"""Filters of the model_weights role, from the revision's manifest (the plan made on the controller) and the files
in the nodes' caches:

- `model_weights_bytes_needed`: the disk bytes a node still needs for the revision. It counts what
  `hf_model_snapshot` would download there (`hf_weights.bytes_needed_given`): blobs of the right size are held,
  partial files are continued, and blobs of other revisions, which the new one does not use, count for nothing.
- `model_weights_fanout_plan`: for a fan-out, which node brings each blob into the fleet (`hf_fanout.assign_owners`:
  a node that holds it already, else the nodes in turn) and what each node still needs.
"""

import os

import ansible.module_utils

# The project's module_utils under the name its modules import them by (plugins/README.md, "module_utils").
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)
from ansible.module_utils import hf_fanout, hf_weights  # noqa: E402  pylint: disable=wrong-import-position

# The first filter's documentation (ansible-doc reads one per file); model_weights_fanout_plan's is its docstring.
DOCUMENTATION = r"""
name: model_weights_bytes_needed
short_description: Disk bytes a revision still needs in a node's Hugging Face cache
description:
  - Takes the C(manifest) returned by hf_model_snapshot (check mode) and the files of the repository's C(blobs)
    directory on the node (name and size in bytes).
positional: _input, blobs
options:
  _input:
    description: The manifest (hf_model_snapshot's C(manifest) return value).
    type: dict
    required: true
  blobs:
    description: The files in the cache's blobs directory, file name to size in bytes.
    type: dict
    required: true
"""

EXAMPLES = r"""
needed: "{{ plan.manifest | model_weights_bytes_needed({'3f1c…e2': 4294967296}) }}"
"""

RETURN = r"""
_value:
  description: Bytes still to download there.
  type: int
"""


def model_weights_bytes_needed(manifest: dict, blobs: dict) -> int:
    sizes = {str(name): int(size) for name, size in blobs.items()}
    return hf_weights.bytes_needed_given(hf_weights.Manifest.from_dict(manifest), sizes)


def model_weights_fanout_plan(manifest: dict, holdings: list) -> dict:
    """For the nodes of a fan-out, in their shared order: `owners` (blob name: index of the node that fetches it
    from the hub, or holds it) and `bytes_needed` (per node). `holdings` has one list per node of "name size" lines,
    the files of its blobs directory (the disk check's listing)."""
    parsed = hf_weights.Manifest.from_dict(manifest)
    held = []
    for lines in holdings:
        sizes = {}
        for line in lines or []:
            fields = str(line).split()
            if len(fields) == 2 and fields[1].isdigit():
                sizes[fields[0]] = int(fields[1])
        held.append(sizes)
    return {"owners": hf_fanout.assign_owners(parsed, len(held), held),
            "bytes_needed": [hf_weights.bytes_needed_given(parsed, sizes) for sizes in held]}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"model_weights_bytes_needed": model_weights_bytes_needed,
                "model_weights_fanout_plan": model_weights_fanout_plan}
