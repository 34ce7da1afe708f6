"""The Ray engine: the same job on Ray Data, from one laptop to a GPU cluster.

Images: this process lists them and groups them into batches as the local engine does (by count
and by pixels), and those into Ray Data blocks that hold no more pixels than one batch may.
`images.decode` tasks (decoding; without GPUs also the face search) -> `images.Model` actors
(the AU model; on GPUs the face search too), both running a block batch by batch -> plain
columns (`columns`), streamed back in input order and turned into FaceRecords here, where jobs.py
writes them as it writes the local engine's. An input that fails is a value in the `error`
column: nothing one input does stops the dataset.

Videos (`videos`): one streaming task per video runs the local engine's own video loop (frames in
order, faces tracked inside), so rows and track ids are the local engine's, and sends each batch
back as it is done. Cameras stay on this machine.

Every node must see the inputs and the checkpoint at the same paths (a shared file system); only
this process writes, into its output folder. Workers build their pipeline from the run's
`PipelineSpec`, pickled. `cluster` joins the cluster and places the work; `engine` holds
`RayEngine`; `FaceAUs` (`face_aus`) is the building block for Ray Data pipelines of one's own.
"""

from .engine import RayEngine
from .face_aus import FaceAUs

__all__ = ["FaceAUs", "RayEngine"]
