"""Model graphs: ``add_graph`` (torch's JIT tracer) and ``add_onnx_graph``.

The GraphDef is made by torch's own tracer and converter
(``torch.utils.tensorboard._pytorch_graph.graph``, ``_onnx_graph.load_onnx_graph``),
so it is the one torch's writer writes; tbfast only frames the events. Both need
tensorboard (``pip install 'tbfast[tensorboard]'``); ONNX graphs also need ``onnx``
(``tbfast[onnx]``).

Events, as torch's ``FileWriter.add_graph`` writes them: ``Event(graph_def=<GraphDef
bytes>)`` then ``Event(tagged_run_metadata=TaggedRunMetadata(tag="step1",
run_metadata=<RunMetadata bytes>))``, both without a step.
"""

import time

from . import _wire
from ._optional import require, torch_tensorboard


def graph_event_bytes(graph_def, wall_time):
    """Serialised ``Event(wall_time, graph_def=graph_def)`` (graph_def: GraphDef bytes)."""
    return _wire.double(1, wall_time) + _wire.length_delimited(4, bytes(graph_def))


def run_metadata_event_bytes(tag, run_metadata, wall_time):
    """Serialised ``Event(wall_time, tagged_run_metadata=TaggedRunMetadata(tag,
    run_metadata))`` (run_metadata: RunMetadata bytes)."""
    tagged = _wire.length_delimited(1, tag.encode("utf-8")) + _wire.length_delimited(2, bytes(run_metadata))
    return _wire.double(1, wall_time) + _wire.length_delimited(8, tagged)


class GraphLogging:
    """Writer methods for graphs. The host class provides ``_get_file_writer()``."""

    def add_graph(self, model, input_to_model=None, verbose=False, use_strict_trace=True) -> None:
        """torch's ``add_graph``: traces ``model`` on ``input_to_model`` (a tensor or a
        tuple of tensors) with ``torch.jit.trace`` and writes the GraphDef torch makes,
        plus its step stats. Raises what torch's tracer raises."""
        pytorch_graph = torch_tensorboard("_pytorch_graph", "add_graph")
        graph_def, step_stats = pytorch_graph.graph(model, input_to_model, verbose, use_strict_trace)
        fw = self._get_file_writer()
        fw.add_records([graph_event_bytes(graph_def.SerializeToString(), time.time())])
        fw.add_records([run_metadata_event_bytes("step1", step_stats.SerializeToString(), time.time())])

    def add_onnx_graph(self, prototxt) -> None:
        """torch's ``add_onnx_graph``: the GraphDef of the ONNX model file ``prototxt``
        (a path), converted by torch. Needs ``onnx``."""
        require("onnx", "add_onnx_graph")
        onnx_graph = torch_tensorboard("_onnx_graph", "add_onnx_graph")
        graph_def = onnx_graph.load_onnx_graph(prototxt)
        self._get_file_writer().add_records([graph_event_bytes(graph_def.SerializeToString(), time.time())])
