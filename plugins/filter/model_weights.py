"""Filter of the model_weights role: the disk bytes a node still needs for a revision, from the revision's
manifest (the plan made on the controller) and the files in the node's cache.

It counts what `hf_model_snapshot` would download there (`hf_weights.bytes_needed_given`): blobs of the right
size are held, partial files are continued, and blobs of other revisions, which the new one does not use, count
for nothing.
"""

import os

import ansible.module_utils

# The project's module_utils under the name its modules import them by (plugins/README.md, "module_utils").
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)
from ansible.module_utils import hf_weights  # noqa: E402  pylint: disable=wrong-import-position

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


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"model_weights_bytes_needed": model_weights_bytes_needed}
