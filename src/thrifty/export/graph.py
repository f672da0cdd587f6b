"""ONNX graphs of a student: token ids -> features -> label probabilities.

A feature graph takes ``input_ids`` and ``attention_mask`` (int64, ``[batch, seq]``) and
yields ``features`` (float32, ``[batch, dim]``); the head graph (converted by skl2onnx from
the student's fitted scikit-learn estimator) maps ``features`` to the probabilities of the
classes it saw, and a fixed 0/1 matrix spreads them onto all labels, as
:func:`thrifty.students.full_proba` does. Outputs: ``probabilities`` (float32,
``[batch, n_labels]``) and ``label`` (int64 index into the label list).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ThriftyError

OPSET = 17  # the MiniLM encoder's opset (features/onnx_encoder.py)
ML_OPSET = 3
INPUTS = ("input_ids", "attention_mask")


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ThriftyError("ONNX export needs onnx and skl2onnx: pip install 'thrifty[export]'.") from None
    return onnx, helper, numpy_helper


def _pool_nodes(hidden: str, pooling: str, normalize: bool, prefix: str = "pool") -> tuple[list, list, str]:
    """Nodes pooling ``hidden`` ([batch, seq, dim]) under ``attention_mask`` into ``features``."""
    _, helper, numpy_helper = _onnx()
    p = prefix
    nodes, inits = [], [
        numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}_axis1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}_axis_last"),
    ]
    if pooling == "mean" or pooling == "sum":
        nodes += [
            helper.make_node("Cast", ["attention_mask"], [f"{p}_maskf"], to=1),
            helper.make_node("Unsqueeze", [f"{p}_maskf", f"{p}_axis_last"], [f"{p}_mask3"]),
            helper.make_node("Mul", [hidden, f"{p}_mask3"], [f"{p}_masked"]),
            helper.make_node("ReduceSum", [f"{p}_masked", f"{p}_axis1"], [f"{p}_sum"], keepdims=0),
        ]
        out = f"{p}_sum"
        if pooling == "mean":
            inits.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{p}_one"))
            nodes += [
                helper.make_node("ReduceSum", [f"{p}_maskf", f"{p}_axis1"], [f"{p}_count"], keepdims=1),
                helper.make_node("Max", [f"{p}_count", f"{p}_one"], [f"{p}_count1"]),
                helper.make_node("Div", [f"{p}_sum", f"{p}_count1"], [f"{p}_mean"]),
            ]
            out = f"{p}_mean"
    elif pooling == "cls":
        inits.append(numpy_helper.from_array(np.array(0, dtype=np.int64), f"{p}_zero"))
        nodes.append(helper.make_node("Gather", [hidden, f"{p}_zero"], [f"{p}_cls"], axis=1))
        out = f"{p}_cls"
    else:
        raise ThriftyError(f"Pooling {pooling!r} has no ONNX export yet (mean, sum and cls do).")
    if normalize:
        inits.append(numpy_helper.from_array(np.array(1e-12, dtype=np.float32), f"{p}_eps"))
        nodes += [
            helper.make_node("ReduceL2", [out], [f"{p}_norm"], axes=[1], keepdims=1),
            helper.make_node("Max", [f"{p}_norm", f"{p}_eps"], [f"{p}_norm1"]),
            helper.make_node("Div", [out, f"{p}_norm1"], ["features"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", [out], ["features"]))
    return nodes, inits, "features"


def _io(name: str, elem: int, shape: list) -> Any:
    _, helper, _ = _onnx()
    return helper.make_tensor_value_info(name, elem, shape)


def sentence_graph(enc: Any) -> Any:
    """An ONNX encoder (:class:`~thrifty.features.onnx_encoder.OnnxEncoder`: of sentence features, ``minilm`` and
    ``st:``, or of a fine-tuned transformer) with its pooling and normalisation appended."""
    onnx, helper, numpy_helper = _onnx()
    model = onnx.load(str(enc.directory / "model.onnx"))
    g = model.graph
    outputs = [o.name for o in g.output]
    if outputs != ["last_hidden_state"]:
        raise ThriftyError(f"Unexpected encoder outputs {outputs}; re-export the encoder with this thrifty.")
    if "token_type_ids" in [i.name for i in g.input]:  # one segment: zeros shaped like input_ids
        keep = [i for i in g.input if i.name != "token_type_ids"]
        del g.input[:]
        g.input.extend(keep)
        g.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int64), "tt_zero"))
        g.node.insert(0, helper.make_node("Mul", ["input_ids", "tt_zero"], ["token_type_ids"]))
    nodes, inits, out = _pool_nodes("last_hidden_state", enc.meta["pooling"], bool(enc.meta["normalize"]))
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.append(_io(out, 1, ["batch", enc.dim]))
    return model


def static_graph(features: Any) -> Any:
    """Static embeddings: gather each token's (SIF-weighted) vector, sum over the mask, L2-normalise."""
    _, helper, numpy_helper = _onnx()
    table = np.asarray(features.table_, dtype=np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0)]
    pool, inits, out = _pool_nodes("tokens", "sum", True)
    graph = helper.make_graph(
        nodes + pool, "thrifty_static",
        [_io("input_ids", 7, ["batch", "seq"]), _io("attention_mask", 7, ["batch", "seq"])],
        [_io(out, 1, ["batch", table.shape[1]])],
        [numpy_helper.from_array(table, "table")] + inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def head_graph(student: Any, n_features: int, n_labels: int) -> Any:
    """The student's classifier as ONNX: ``features`` -> ``probabilities`` over all labels + ``label``."""
    _, helper, numpy_helper = _onnx()
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise ThriftyError("ONNX export needs skl2onnx: pip install 'thrifty[export]'.") from None
    from sklearn.pipeline import Pipeline

    est = getattr(student, "model_", None)
    if est is None or not hasattr(est, "predict_proba") or type(est).__module__.startswith("thrifty."):
        raise ThriftyError(f"The {type(student).__name__} head has no ONNX converter (logistic regression, "
                           "calibrated SVM and the tree students do).")
    steps = [("clf", est)]
    if getattr(student, "projection_", None) is not None:
        steps.insert(0, ("proj", student.projection_))
    pipe = Pipeline(steps)
    try:
        head = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, n_features]))],
                               options={id(est): {"zipmap": False}}, target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET})
    except Exception as e:  # noqa: BLE001 - skl2onnx raises many types for unsupported models
        raise ThriftyError(f"skl2onnx cannot convert the {type(est).__name__} head: {e}") from None
    g = head.graph
    prob = [o.name for o in g.output if o.name != "label" and o.type.tensor_type.elem_type == 1]
    if len(prob) != 1:
        raise ThriftyError(f"Unexpected outputs from skl2onnx: {[o.name for o in g.output]}.")
    rename = {"label": "head_label", prob[0]: "head_proba"}
    for n in g.node:  # free the public names for our outputs
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
    classes = np.asarray(student.classes_, dtype=int)
    spread = np.zeros((len(classes), n_labels), dtype=np.float32)
    spread[np.arange(len(classes)), classes] = 1.0
    g.initializer.append(numpy_helper.from_array(spread, "spread"))
    g.node.extend([
        helper.make_node("MatMul", ["head_proba", "spread"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ])
    del g.output[:]
    g.output.extend([_io("probabilities", 1, ["batch", n_labels]), _io("label", 7, ["batch"])])
    return head


def linear_head_graph(weight: np.ndarray, bias: np.ndarray, classes: Any, n_labels: int) -> Any:
    """A linear softmax head (the fine-tuned transformer's, in numpy): ``features`` -> ``probabilities`` over all
    labels + ``label``, the same outputs as :func:`head_graph`."""
    _, helper, numpy_helper = _onnx()
    W = np.asarray(weight, dtype=np.float32)
    spread = np.zeros((W.shape[0], n_labels), dtype=np.float32)
    spread[np.arange(W.shape[0]), np.asarray(classes, dtype=int)] = 1.0
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "head_w", "head_b"], ["head_logits"], transB=1),
         helper.make_node("Softmax", ["head_logits"], ["head_proba"], axis=1),
         helper.make_node("MatMul", ["head_proba", "spread"], ["probabilities"]),
         helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)],
        "thrifty_linear_head",
        [_io("features", 1, ["batch", W.shape[1]])],
        [_io("probabilities", 1, ["batch", n_labels]), _io("label", 7, ["batch"])],
        [numpy_helper.from_array(W, "head_w"), numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "head_b"),
         numpy_helper.from_array(spread, "spread")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def compose(features_model: Any, head: Any, keep_features: bool = False) -> Any:
    """One model: the feature graph's ``features`` feed the head. ``keep_features``: ``features`` stays an output
    too (a pool's nearest-neighbour member reads them)."""
    onnx = _onnx()[0]
    from onnx import compose as oc

    ir = min(features_model.ir_version, head.ir_version)
    features_model.ir_version = head.ir_version = ir
    feat = next(o for o in features_model.graph.output if o.name == "features")
    merged = oc.merge_models(features_model, head, io_map=[("features", "features")])
    if keep_features:
        merged.graph.output.append(feat)
    onnx.checker.check_model(merged)
    return merged
