"""Writes UI-format (LiteGraph) workflows, the files artists drag into ComfyUI, from a compact graph.

Widget values are laid out in the order the real host declares each node's inputs (object_info),
with the frontend's extra `control_after_generate` value after seed inputs, so the files load in
the frontend exactly as if saved from it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MUTED = 2  # LiteGraph node mode "never": shown in the graph, left out of the prompt
COLUMN_WIDTH, ROW_GAP, NODE_WIDTH = 380, 40, 340


@dataclasses.dataclass
class Node:
    id: int
    type: str
    widgets: dict
    links: dict  # input name -> (source Node, output index)
    title: str | None = None
    mode: int = 0  # LiteGraph node mode: 0 always, 2 never (muted: shown, not run until the user enables it)


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _ordered_inputs(info):
    declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info.get("input_order", {})
    names = order.get("required", []) + order.get("optional", [])
    return [(name, declared[name]) for name in names]


class Workflow:
    def __init__(self, node_info: dict):
        self.node_info = node_info
        self.nodes: list[Node] = []

    def add(self, type_: str, title: str | None = None, **inputs) -> Node:
        if type_ not in self.node_info:
            raise KeyError(f"node type {type_} is not registered in the host")
        links = {k: v for k, v in inputs.items() if isinstance(v, tuple)}
        widgets = {k: v for k, v in inputs.items() if not isinstance(v, tuple)}
        node = Node(len(self.nodes) + 1, type_, widgets, links, title)
        self.nodes.append(node)
        return node

    def _widget_values(self, node: Node) -> list:
        declared = _ordered_inputs(self.node_info[node.type])
        unknown = set(node.widgets) - {name for name, _ in declared}
        if unknown:
            raise ValueError(f"{node.type}: unknown inputs {sorted(unknown)}")
        values = []
        for name, spec in declared:
            if not _is_widget(spec):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            values.append(self._widget_value(node, name, spec, options))
            if options.get("control_after_generate"):
                values.append("fixed")
        return values

    @staticmethod
    def _widget_value(node: Node, name: str, spec, options: dict):
        if name in node.widgets:
            return node.widgets[name]
        if "default" in options:
            return options["default"]
        choices = spec[0] if isinstance(spec[0], list) else options.get("options")
        if choices:
            return choices[0]
        raise ValueError(f"{node.type}: widget {name} needs a value")

    def _depths(self) -> dict:
        depth = {}
        for node in self.nodes:  # nodes are added after their sources
            depth[node.id] = 1 + max((depth[src.id] for src, _ in node.links.values()), default=-1)
        return depth

    def to_ui(self, extra_info: dict | None = None) -> dict:
        links, link_rows = {}, []
        for node in self.nodes:
            for name, (src, slot) in node.links.items():
                link_id = len(link_rows) + 1
                out_type = self.node_info[src.type]["output"][slot]
                link_rows.append([link_id, src.id, slot, node.id, name, out_type])
                links[(node.id, name)] = link_id
        ui_nodes = self._layout([self._ui_node(n, links, link_rows) for n in self.nodes])
        rows = [[lid, s, ss, d, self._slot_index(d, name, ui_nodes), t] for lid, s, ss, d, name, t in link_rows]
        return {"last_node_id": len(self.nodes), "last_link_id": len(rows), "nodes": ui_nodes, "links": rows,
                "groups": [], "config": {}, "extra": extra_info or {}, "version": 0.4}

    @staticmethod
    def _slot_index(node_id, input_name, ui_nodes):
        node = next(n for n in ui_nodes if n["id"] == node_id)
        slots = [i for i, slot in enumerate(node["inputs"]) if slot["name"] == input_name]
        if not slots:
            raise KeyError(f"{node['type']} has no input socket '{input_name}' (it has "
                           f"{[slot['name'] for slot in node['inputs']]})")
        return slots[0]

    def _ui_node(self, node: Node, links: dict, link_rows: list) -> dict:
        info = self.node_info[node.type]
        inputs = [{"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                   "link": links.get((node.id, name))}
                  for name, spec in _ordered_inputs(info)
                  if not _is_widget(spec) and (name in info["input"].get("required", {}) or name in node.links)]
        outputs = []
        for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"])):
            targets = [row[0] for row in link_rows if row[1] == node.id and row[2] == slot]
            outputs.append({"name": name, "type": kind, "links": targets, "slot_index": slot})
        ui = {"id": node.id, "type": node.type, "pos": [0, 0], "size": [NODE_WIDTH, 0], "flags": {},
              "order": node.id - 1, "mode": node.mode, "inputs": inputs, "outputs": outputs,
              "properties": {"Node name for S&R": node.type}, "widgets_values": self._widget_values(node)}
        if node.title:
            ui["title"] = node.title
        return ui

    def _layout(self, ui_nodes: list) -> list:
        depth, column_y = self._depths(), {}
        for ui in ui_nodes:
            rows = max(len(ui["inputs"]), len(ui["outputs"])) + len(ui["widgets_values"])
            height = 30 + 24 * rows
            column = depth[ui["id"]]
            ui["size"][1] = height
            ui["pos"] = [40 + column * COLUMN_WIDTH, 40 + column_y.get(column, 0)]
            column_y[column] = column_y.get(column, 0) + height + ROW_GAP
        return ui_nodes


def write(workflow: Workflow, path, extra_info=None):
    """Writes the workflow JSON under a temporary name beside `path`, then renames it into place."""
    text = json.dumps(workflow.to_ui(extra_info), indent=1) + "\n"
    path = pathlib.Path(path)
    temp = path.with_name(f".{path.name}.partial")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def to_api(ui: dict, node_info: dict) -> dict:
    """The API prompt {id: {"class_type", "inputs"}} that the frontend's graphToPrompt makes of a UI workflow
    written by `write`, on a host with `node_info`: widget values are read in the host's declared widget order
    (a seed's `control_after_generate` value skipped), widgets the file has no value for (ones a newer core
    appended) get their default, and links become [source id, output slot]; muted nodes (mode 2, "never") are
    left out, as the frontend leaves them out. tests/host/test_workflows.py checks the result against the real
    frontend's conversion on each host."""
    sources = {row[0]: (str(row[1]), row[2]) for row in ui["links"]}
    muted = {str(node["id"]) for node in ui["nodes"] if node.get("mode", 0) == MUTED}
    prompt = {}
    for node in ui["nodes"]:
        if str(node["id"]) in muted:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is bypassed: to_api converts active and muted nodes")
        inputs = _api_widgets(node, node_info[node["type"]])
        for slot in node["inputs"]:
            if slot.get("link") is not None:
                if sources[slot["link"]][0] in muted:
                    raise ValueError(f"node {node['id']} ({node['type']}) input {slot['name']} comes from a muted "
                                     "node: unmute it or mute this node too")
                inputs[slot["name"]] = list(sources[slot["link"]])
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def _api_widgets(node: dict, info: dict) -> dict:
    values, widgets = list(node.get("widgets_values", [])), {}
    for name, spec in _ordered_inputs(info):
        if not _is_widget(spec):
            continue
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if values:
            widgets[name] = values.pop(0)
            if options.get("control_after_generate") and values:
                values.pop(0)
        else:
            widgets[name] = Workflow._widget_value(Node(node["id"], node["type"], {}, {}), name, spec, options)
    return widgets
