"""A small stand-in for the ``tensorrt`` Python module that behaves as its documentation says, for the parts
regenrt's build path touches (TensorRT could not be installed where this was written). Documented behaviours modelled:

- ``Runtime.engine_host_code_allowed`` defaults to False; a version-compatible engine embeds host code and
  ``deserialize_cuda_engine`` returns None unless it is set (TensorRT 10 developer guide, version compatibility).
- ``IBuilderConfig.set_timing_cache(cache, ignore_mismatch)`` returns False for a cache made by another TensorRT
  version or device when ``ignore_mismatch`` is False.
- ``EngineInspector``: for an engine with a dynamic profile and no execution context attached, shape-dependent
  values read -1 and format information is not shown; with a context whose input shape is set, it is.
- Layer information JSON: TensorRT 10 writes ``"Format/Datatype"``; TensorRT 11 splits it into ``"Format"`` and
  ``"DataType"``.
"""
from __future__ import annotations

import json
import types


def make(version: str = "10.13.0", device: str = "sm90") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    enum = types.SimpleNamespace
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    trt.NetworkDefinitionCreationFlag = enum(STRONGLY_TYPED=1)
    trt.MemoryPoolType = enum(WORKSPACE=0)
    trt.ProfilingVerbosity = enum(LAYER_NAMES_ONLY=0, NONE=1, DETAILED=2)
    trt.BuilderFlag = enum(VERSION_COMPATIBLE="VERSION_COMPATIBLE")
    trt.HardwareCompatibilityLevel = enum(NONE=0, AMPERE_PLUS=1)
    trt.LayerInformationFormat = enum(ONELINE=0, JSON=1)
    trt.TensorIOMode = enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.calls = []  # what regenrt asked for, for the tests

    class TimingCache:
        def __init__(self, data: bytes):
            self.key = data.decode() if data else f"{version}/{device}"

        def serialize(self):
            return self.key.encode()

    class Config:
        def __init__(self):
            self.flags, self.profiling_verbosity, self.hardware_compatibility_level = set(), 0, 0
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            pass

        def add_optimization_profile(self, profile):
            self.profile = profile

        def create_timing_cache(self, data: bytes):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            trt.calls.append(("set_timing_cache", cache.key))
            if cache.key != f"{version}/{device}" and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        def set_flag(self, flag):
            self.flags.add(flag)

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return types.SimpleNamespace(flags=flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if major < 11 and not network.flags:
                return None  # regenrt always builds strongly typed
            lo, opt, hi = config.profile.shapes
            return json.dumps({"dynamic": lo != hi, "verbosity": config.profiling_verbosity,
                               "version_compatible": "VERSION_COMPATIBLE" in config.flags}).encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class Context:
        def __init__(self):
            self.shape = None

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

    class Inspector:
        def __init__(self, engine):
            self.engine, self.execution_context = engine, None

        def get_engine_information(self, fmt):
            shown = not self.engine.info["dynamic"] or (self.execution_context is not None
                                                       and self.execution_context.shape is not None)
            if self.engine.info["verbosity"] != trt.ProfilingVerbosity.DETAILED:
                return json.dumps({"Layers": ["conv1", "conv2"]})
            layers = []
            for name, kind in (("conv1", ("Half", "FP16")), ("act", ("Half", "FP16")), ("out", ("Float", "FP32"))):
                output = {"Name": name, "Dimensions": [-1, 8, -1, -1]}
                if shown:
                    fmt_text = f"Row major linear {kind[1]} format (kLINEAR)"
                    output.update({"Format": fmt_text.replace(f" {kind[1]}", ""), "DataType": kind[0]}
                                  if major >= 11 else {"Format/Datatype": fmt_text})
                layers.append({"Name": name, "Outputs": [output]})
            return json.dumps({"Layers": layers})

    class Engine:
        def __init__(self, info):
            self.info = info

        def create_execution_context(self):
            return Context()

        def create_engine_inspector(self):
            return Inspector(self)

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            info = json.loads(bytes(data).decode())
            if info["version_compatible"] and not self.engine_host_code_allowed:
                return None
            return Engine(info)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt
