"""tbfast.proto: round trips, wire compatibility with TensorBoard's protos, coexistence
with tensorboard / tensorboardX, and loading on protobuf 4.25."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tensorboard.compat.proto import event_pb2 as tb_event
from tensorboard.compat.proto import histogram_pb2 as tb_histogram
from tensorboard.compat.proto import resource_handle_pb2 as tb_resource
from tensorboard.compat.proto import summary_pb2 as tb_summary
from tensorboard.compat.proto import tensor_pb2 as tb_tensor
from tensorboard.compat.proto import tensor_shape_pb2 as tb_shape
from tensorboard.compat.proto import types_pb2 as tb_types
from tensorboard.plugins.histogram import plugin_data_pb2 as tb_hist_plugin
from tensorboard.plugins.pr_curve import plugin_data_pb2 as tb_pr_plugin

from tbfast import proto

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOBUF4 = ROOT / ".ci" / "protobuf4"


def _tensor():
    return proto.TensorProto(
        dtype=proto.DT_DOUBLE,
        tensor_shape=proto.TensorShapeProto(dim=[proto.TensorShapeProto.Dim(size=s) for s in (2, 3)]),
        version_number=0,
        double_val=[0.5, -1.0, 2.0, 1e300, -0.0, 7.0],
        tensor_content=b"\x00\x01\x02",
        half_val=[1, 2],
        float_val=[1.5],
        int_val=[-3],
        string_val=[b"a", b"\xff"],
        scomplex_val=[1.0, 2.0],
        int64_val=[-(2**62)],
        bool_val=[True, False],
        dcomplex_val=[3.0, 4.0],
        uint32_val=[2**32 - 1],
        uint64_val=[2**64 - 1],
        float8_val=b"\x7f",
        resource_handle_val=[proto.ResourceHandleProto(device="cpu", name="r", hash_code=2**63)],
        variant_val=[proto.VariantTensorDataProto(type_name="t", metadata=b"m")],
    )


def _summary():
    hist = proto.HistogramProto(
        min=-1.0, max=2.0, num=3.0, sum=1.5, sum_squares=5.25, bucket_limit=[0.0, 1.0, 2.0], bucket=[1.0, 0.0, 2.0]
    )
    pr_meta = proto.SummaryMetadata(
        plugin_data=proto.SummaryMetadata.PluginData(
            plugin_name="pr_curves", content=proto.PrCurvePluginData(version=0, num_thresholds=201).SerializeToString()
        ),
        display_name="pr",
        summary_description="desc",
        data_class=proto.DATA_CLASS_TENSOR,
    )
    V = proto.Summary.Value
    return proto.Summary(
        value=[
            V(tag="scalar", simple_value=0.25),
            V(tag="histo", histo=hist),
            V(tag="image", image=proto.Summary.Image(height=2, width=3, colorspace=4, encoded_image_string=b"\x89PNG")),
            V(tag="audio", audio=proto.Summary.Audio(sample_rate=8000.0, num_channels=1, length_frames=4,
                                                     encoded_audio_string=b"RIFF", content_type="audio/wav")),
            V(tag="pr", metadata=pr_meta, tensor=_tensor()),
            V(tag="old", obsolete_old_style_histogram=b"x"),
        ]
    )


def _events():
    return [
        proto.Event(wall_time=1700000000.5, file_version="brain.Event:2",
                    source_metadata=proto.SourceMetadata(writer="tbfast")),
        proto.Event(wall_time=1.0, step=7, summary=_summary()),
        proto.Event(wall_time=2.0, step=-1, session_log=proto.SessionLog(status=proto.SessionLog.START,
                                                                         checkpoint_path="/c", msg="m")),
        proto.Event(wall_time=3.0, graph_def=b"graph"),
        proto.Event(wall_time=4.0, meta_graph_def=b"meta"),
        proto.Event(wall_time=5.0, tagged_run_metadata=proto.TaggedRunMetadata(tag="t", run_metadata=b"rm")),
    ]


MESSAGES = [
    _tensor(),
    _summary(),
    *_events(),
    proto.HistogramPluginData(version=0),
    proto.PrCurvePluginData(version=0, num_thresholds=2**32 - 1),
    proto.TensorShapeProto(unknown_rank=True),
    proto.ResourceHandleProto(dtypes_and_shapes=[proto.ResourceHandleProto.DtypeAndShape(dtype=proto.DT_INT64)]),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    data = msg.SerializeToString()
    back = type(msg).FromString(data)
    assert back == msg
    assert back.SerializeToString() == data


def test_histogram_plugin_version0_is_empty_bytes():
    assert proto.HistogramPluginData(version=0).SerializeToString() == b""


def test_spec_tag_bytes():
    # Spec section 4: a few tag bytes checked by hand.
    assert proto.Event(wall_time=1.0).SerializeToString()[:1] == b"\x09"
    assert proto.Event(file_version="x").SerializeToString()[:1] == b"\x1a"
    assert proto.Event(source_metadata=proto.SourceMetadata(writer="w")).SerializeToString()[:1] == b"\x52"
    assert proto.TensorShapeProto(dim=[proto.TensorShapeProto.Dim(size=1)]).SerializeToString() == b"\x12\x02\x08\x01"
    assert proto.HistogramProto(bucket=[1.0]).SerializeToString()[:2] == b"\x3a\x08"
    assert proto.Summary.Value(simple_value=1.0).SerializeToString()[:1] == b"\x15"


# --- wire compatibility with TensorBoard's own generated code ---------------------------

PAIRS = [
    (proto.Event, tb_event.Event),
    (proto.SourceMetadata, tb_event.SourceMetadata),
    (proto.SessionLog, tb_event.SessionLog),
    (proto.LogMessage, tb_event.LogMessage),
    (proto.TaggedRunMetadata, tb_event.TaggedRunMetadata),
    (proto.Summary, tb_summary.Summary),
    (proto.Summary.Value, tb_summary.Summary.Value),
    (proto.Summary.Image, tb_summary.Summary.Image),
    (proto.Summary.Audio, tb_summary.Summary.Audio),
    (proto.SummaryMetadata, tb_summary.SummaryMetadata),
    (proto.SummaryMetadata.PluginData, tb_summary.SummaryMetadata.PluginData),
    (proto.HistogramProto, tb_histogram.HistogramProto),
    (proto.TensorProto, tb_tensor.TensorProto),
    (proto.VariantTensorDataProto, tb_tensor.VariantTensorDataProto),
    (proto.TensorShapeProto, tb_shape.TensorShapeProto),
    (proto.TensorShapeProto.Dim, tb_shape.TensorShapeProto.Dim),
    (proto.ResourceHandleProto, tb_resource.ResourceHandleProto),
    (proto.ResourceHandleProto.DtypeAndShape, tb_resource.ResourceHandleProto.DtypeAndShape),
    (proto.PrCurvePluginData, tb_pr_plugin.PrCurvePluginData),
    (proto.HistogramPluginData, tb_hist_plugin.HistogramPluginData),
]


def _shape(desc):
    """Everything about a message's fields that reaches the wire or the oneof layout."""
    out = {}
    for f in desc.fields:
        sub = f.message_type.name if f.message_type else (f.enum_type.name if f.enum_type else None)
        oneof = f.containing_oneof.name if f.containing_oneof else None
        out[f.number] = (f.name, f.type, f.is_repeated, f.is_packed, sub, oneof)
    return out


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda m: m.DESCRIPTOR.full_name)
def test_descriptors_match_tensorboard(ours, theirs):
    assert ours.DESCRIPTOR.full_name.startswith("tbfast.proto.")
    assert ours.DESCRIPTOR.name == theirs.DESCRIPTOR.name
    assert _shape(ours.DESCRIPTOR) == _shape(theirs.DESCRIPTOR)


def test_enums_match_tensorboard():
    def values(enum):
        return {v.name: v.number for v in enum.DESCRIPTOR.values}

    assert values(proto.DataType) == values(tb_types.DataType)
    assert values(proto.DataClass) == values(tb_summary.DataClass)
    assert values(proto.SessionLog.SessionStatus) == values(tb_event.SessionLog.SessionStatus)
    assert values(proto.LogMessage.Level) == values(tb_event.LogMessage.Level)


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.WhichOneof("what"))
def test_event_bytes_parse_both_ways(event):
    data = event.SerializeToString()
    theirs = tb_event.Event.FromString(data)
    assert theirs.SerializeToString() == data
    assert proto.Event.FromString(theirs.SerializeToString()) == event
    assert theirs.wall_time == event.wall_time and theirs.step == event.step
    assert theirs.WhichOneof("what") == event.WhichOneof("what")


def test_summary_parses_in_tensorboard_to_equal_message():
    ours = _summary()
    theirs = tb_summary.Summary.FromString(ours.SerializeToString())
    assert [v.tag for v in theirs.value] == [v.tag for v in ours.value]
    assert theirs.value[0].simple_value == 0.25
    assert list(theirs.value[1].histo.bucket) == [1.0, 0.0, 2.0]
    assert theirs.value[2].image.encoded_image_string == b"\x89PNG"
    assert theirs.value[4].metadata.plugin_data.plugin_name == "pr_curves"
    assert theirs.value[4].tensor.tensor_shape.dim[1].size == 3
    assert theirs.value[4].tensor.uint64_val[0] == 2**64 - 1
    # Equal messages: an independently built TensorBoard Summary serialises identically.
    built = tb_summary.Summary(value=[tb_summary.Summary.Value(tag="h", histo=tb_histogram.HistogramProto(
        min=-1.0, num=3.0, bucket_limit=[0.0, 1.0], bucket=[1.0, 2.0]))])
    mine = proto.Summary(value=[proto.Summary.Value(tag="h", histo=proto.HistogramProto(
        min=-1.0, num=3.0, bucket_limit=[0.0, 1.0], bucket=[1.0, 2.0]))])
    assert built.SerializeToString() == mine.SerializeToString()
    assert tb_summary.Summary.FromString(mine.SerializeToString()) == built
    assert proto.Summary.FromString(built.SerializeToString()) == mine


def test_tensorboard_plugin_parsers_accept_our_content():
    from tensorboard.plugins.pr_curve import metadata as pr_metadata

    meta = tb_summary.SummaryMetadata.FromString(_summary().value[4].metadata.SerializeToString())
    parsed = pr_metadata.parse_plugin_metadata(meta.plugin_data.content)
    assert parsed.num_thresholds == 201


def test_coexists_with_tensorboard_and_tensorboardx():
    code = textwrap.dedent(
        """
        import tensorboardX
        from tensorboardX.proto import event_pb2 as x_event, summary_pb2 as x_summary
        from tensorboard.compat.proto import event_pb2 as t_event, summary_pb2 as t_summary
        import tbfast.proto as ours
        e = ours.Event(step=3, summary=ours.Summary(value=[ours.Summary.Value(tag="a", simple_value=1.0)]))
        data = e.SerializeToString()
        assert x_event.Event.FromString(data).summary.value[0].tag == "a"
        assert t_event.Event.FromString(data).summary.value[0].simple_value == 1.0
        assert ours.Event.FromString(x_event.Event(step=3).SerializeToString()).step == 3
        print(ours.Summary.DESCRIPTOR.full_name, t_summary.Summary.DESCRIPTOR.full_name,
              x_summary.Summary.DESCRIPTOR.full_name)
        """
    )
    # A fresh interpreter for each import order: the descriptor pool is per process.
    for first in ("import tbfast.proto\n", "import tensorboard.compat.proto.summary_pb2\n"):
        out = subprocess.run([sys.executable, "-c", first + code], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["tbfast.proto.Summary", "tensorboard.Summary", "tensorboardX.Summary"]


# --- generated code portability ----------------------------------------------------------


def test_generated_code_has_no_runtime_version_check():
    # protoc >= 26 emits ValidateProtobufRuntimeVersion, which rejects older runtimes.
    for path in sorted((ROOT / "tbfast" / "proto").glob("*_pb2.py")):
        text = path.read_text()
        assert "runtime_version" not in text, f"{path.name}: regenerate with scripts/gen_protos.sh (protoc 25.1)"
        assert "from tbfast.proto import" in text or "_pb2 as" not in text
    protos = {p.stem for p in (ROOT / "tbfast" / "proto").glob("*.proto")}
    generated = {p.stem[: -len("_pb2")] for p in (ROOT / "tbfast" / "proto").glob("*_pb2.py")}
    assert protos == generated


@pytest.mark.parametrize("impl", ["upb", "python"])
def test_loads_on_protobuf_4_25(impl):
    if not (PROTOBUF4 / "google" / "protobuf").is_dir():
        pytest.fail(
            f"{PROTOBUF4} is missing. Create it with:\n"
            f"  {sys.executable} -m pip install --target .ci/protobuf4 protobuf==4.25.9\n"
            "(scripts/install.sh does this in CI)"
        )
    code = textwrap.dedent(
        """
        import google.protobuf
        from google.protobuf.internal import api_implementation
        assert google.protobuf.__version__.startswith("4.25."), google.protobuf.__version__
        assert api_implementation.Type() == IMPL, api_implementation.Type()
        import tbfast.proto as p
        e = p.Event(wall_time=1.5, step=2, summary=p.Summary(value=[p.Summary.Value(
            tag="h", histo=p.HistogramProto(num=2.0, bucket_limit=[1.0], bucket=[2.0]))]))
        data = e.SerializeToString()
        assert p.Event.FromString(data) == e
        print(data.hex())
        """
    ).replace("IMPL", repr(impl))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROTOBUF4), str(ROOT)]),
               PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=impl)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    expected = proto.Event(wall_time=1.5, step=2, summary=proto.Summary(value=[proto.Summary.Value(
        tag="h", histo=proto.HistogramProto(num=2.0, bucket_limit=[1.0], bucket=[2.0]))]))
    assert bytes.fromhex(out.stdout.strip()) == expected.SerializeToString()
