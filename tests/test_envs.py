"""The conda environments (envs/*.yaml) against pyproject.toml and against the code each rule runs.

Static only (no conda, no network): a job under --use-conda gets nothing but its env's packages
(src/adfm comes from the checkout via PYTHONPATH), so a package the stage imports and the env
lacks fails only there, typically on a cluster, hours into a run. tests/envs/resolve_envs.py checks
that each env's pins resolve together (`make check-envs`, needs an index).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))

# Import names whose distribution packages_distributions() cannot tell when the venv lacks it
IMPORT_DISTRIBUTIONS = {
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "open_clip": "open-clip-torch",
    "huggingface_hub": "huggingface-hub",
    "sklearn": "scikit-learn",
}
# Commands a rule's shell may start that come from a distribution, not from `python -m`
COMMAND_DISTRIBUTIONS = {"accelerate": "accelerate"}


def rel(path: Path) -> str:
    return str(path.resolve().relative_to(REPO))


# ---------------------------------------------------------------------------------------- env files


@dataclass
class Env:
    path: Path
    pip: dict[str, Requirement]  # canonical name -> requirement
    conda: set[str]  # canonical names of the conda part (python, pip)

    def provides(self, distributions: set[str]) -> bool:
        return bool(distributions & (set(self.pip) | self.conda))


@cache
def read_env(path: Path) -> Env:
    spec = yaml.safe_load(path.read_text())
    pip, conda = {}, set()
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            for line in entry.get("pip") or []:
                requirement = Requirement(line)
                pip[canonicalize_name(requirement.name)] = requirement
        else:
            conda.add(canonicalize_name(re.split(r"[\s=<>!]", entry.strip(), maxsplit=1)[0]))
    return Env(path, pip, conda)


def exact_version(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def test_env_pins_agree_with_pyproject():
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert ENV_FILES, "no envs/*.yaml"
    problems = []
    for line in requirements:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        pinned = exact_version(wanted)
        for path in ENV_FILES:
            listed = read_env(path).pip.get(name)
            if listed is None:
                continue
            version = exact_version(listed)
            if pinned is not None and version != pinned:
                problems.append(f"{rel(path)}: `{listed}`, but pyproject.toml pins `{wanted}`")
            elif pinned is None and version is None:
                problems.append(
                    f"{rel(path)}: `{listed}` is no exact pin, so pyproject.toml's `{wanted}` "
                    "cannot be checked against it"
                )
            elif pinned is None and not wanted.specifier.contains(version, prereleases=True):
                problems.append(f"{rel(path)}: `{listed}` is outside pyproject.toml's `{wanted}`")
    assert not problems, "env pins disagree with pyproject.toml:\n  " + "\n  ".join(problems)


# ------------------------------------------------------------------------------------ workflow rules


@dataclass
class Rule:
    name: str
    path: Path
    directives: dict[str, str] = field(default_factory=dict)  # directive -> its source text

    def arguments(self, directive: str) -> ast.Call | None:
        """A directive's content parsed as call arguments (the form Snakemake gives them)."""
        text = self.directives.get(directive)
        return None if text is None else ast.parse(f"f(\n{text}\n)", mode="eval").body


def parse_rules() -> list[Rule]:
    """Each rule's directives, read off the .smk text (Snakemake's own parser needs a workflow). A
    rule in a loop (evaluate.smk's one per model) is read once, named by its `name:` expression."""
    rules = []
    for path in RULE_FILES:
        rule = directive = None
        indent = 0
        for line in path.read_text().splitlines():
            header = re.match(r"( *)(?:rule|checkpoint)\s*(\w*)\s*:", line)
            if header:
                indent, rule, directive = len(header.group(1)), Rule(header.group(2), path), None
                rules.append(rule)
            elif line.startswith("#"):
                continue
            elif line.strip() and not line.startswith(" " * (indent + 1)):
                rule = None  # a statement at the rule's own indentation or less ends it
            elif rule is not None:
                match = re.match(rf" {{{indent + 4}}}(\w+):(.*)$", line)
                if match:
                    directive = match.group(1)
                    rule.directives[directive] = match.group(2)
                elif directive is not None:
                    rule.directives[directive] += "\n" + line
    for rule in rules:
        rule.name = rule.name or rule.directives.get("name", "").strip()
    return rules


@cache
def smk_names() -> dict[str, ast.AST]:
    """Module-level `NAME = expression` and `def NAME` of the rule files (LAUNCHER, gpu_job, ...),
    each read from its own top-level block (the files as a whole are no Python)."""
    found = {}
    for path in RULE_FILES:
        blocks = []
        for line in path.read_text().splitlines():
            # a closing bracket at the margin ends the statement above (BACKENDS = {...})
            if line and not line[0].isspace() and not line.startswith(("#", ")", "]", "}")):
                blocks.append([line])
            elif blocks:
                blocks[-1].append(line)
        for block in blocks:
            if not re.match(r"(def\s+\w+|\w+\s*=[^=])", block[0]):
                continue
            try:
                statement = ast.parse("\n".join(block)).body[0]
            except SyntaxError:
                continue
            if isinstance(statement, ast.FunctionDef):
                found[statement.name] = statement
            elif isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                found[statement.targets[0].id] = statement.value
    return found


def string_parts(node: ast.AST, seen: frozenset = frozenset()) -> list[str]:
    """The literal text in an expression or function, following the rule files' names and the
    adfm.config and adfm.launch functions it calls: what a name such as LAUNCHER or a params function
    such as gpu_job can expand to (the value itself depends on the config)."""
    if isinstance(node, ast.FunctionDef):
        node = ast.Module(body=node.body[docstring(node) :], type_ignores=[])
    parts = []
    for child in ast.walk(node):
        if isinstance(child, ast.JoinedStr):
            parts.append(" {} ".join(str(value.value) for value in child.values if isinstance(value, ast.Constant)))
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            parts.append(child.value)
        elif isinstance(child, ast.Name) and child.id in smk_names() and child.id not in seen:
            parts.extend(string_parts(smk_names()[child.id], seen | {child.id}))
        elif (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Attribute)
            and isinstance(child.func.value, ast.Name)
            and child.func.value.id in HELPER_MODULES
        ):
            function = helper_functions(child.func.value.id).get(child.func.attr)
            if function is not None and child.func.attr not in seen:
                parts.extend(string_parts(function, seen | {child.func.attr}))
    return parts


def docstring(function: ast.FunctionDef) -> int:
    first = function.body[0]
    return int(isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant))


HELPER_MODULES = {"adfm_config": "config.py", "launch": "launch.py"}  # as common.smk imports them


@cache
def helper_functions(alias: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse((SRC / "adfm" / HELPER_MODULES[alias]).read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def shell_text(node: ast.expr) -> str:
    """A shell expression's literal text with `{NAME}` where a Python name is added to it."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return shell_text(node.left) + shell_text(node.right)
    if isinstance(node, ast.Name):
        return "{" + node.id + "}"
    raise ValueError(f"shell is not literal text and names: {ast.unparse(node)}")


@dataclass
class Commands:
    stages: list[str]  # `adfm <stage>` subcommands
    modules: list[str]  # `python -m adfm.<module>`
    distributions: set[str]  # commands of a distribution (`accelerate launch`)


def rule_commands(rule: Rule) -> Commands:
    shell = rule.arguments("shell")
    text = shell_text(shell.args[0])
    params = {keyword.arg: keyword.value for keyword in (rule.arguments("params") or ast.Call(keywords=[])).keywords}
    expansions = {}
    for placeholder in re.findall(r"\{([\w.]+)(?::\w+)?\}", text):
        value = (
            params.get(placeholder.removeprefix("params."))
            if placeholder.startswith("params.")
            else ast.Name(placeholder)
            if placeholder in smk_names()
            else None
        )
        expansions[placeholder] = string_parts(value) if value is not None else []
    everything = " ".join([text, *(part for parts in expansions.values() for part in parts)])
    stages = []
    for match in re.finditer(r"(?:-m\s+adfm|\{([\w.]+)(?::\w+)?\})\s+([a-z][\w-]*)", text):
        # after a placeholder only where it expands to something ending in `-m adfm` (LAUNCHER)
        if match.group(1) is None or any(re.search(r"-m\s+adfm\s*$", part) for part in expansions[match.group(1)]):
            stages.append(match.group(2))
    return Commands(
        stages=stages,
        modules=sorted(set(re.findall(r"-m\s+(adfm\.[\w.]+)", everything))),
        distributions={
            dist for command, dist in COMMAND_DISTRIBUTIONS.items() if re.search(rf"(^|[\s;&|]){command}\s", everything)
        },
    )


@cache
def stage_modules() -> dict[str, str]:
    tree = ast.parse((SRC / "adfm" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "STAGE_MODULES":
            return ast.literal_eval(node.value)
    raise AssertionError("src/adfm/cli.py: no STAGE_MODULES dict")


# --------------------------------------------------------------------------------- imports of a stage

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@cache
def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


@cache
def module_tree(module: str) -> ast.Module:
    path = module_file(module)
    if path is None:
        raise AssertionError(f"no module {module} under src/")
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node  # to read `a.b.c` whole from its `a`
    return tree


@cache
def definitions(module: str) -> dict[str, ast.AST]:
    return {
        node.name: node
        for node in module_tree(module).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


@cache
def module_level(module: str) -> list[ast.AST]:
    """The code that importing a module runs: all but the bodies of its functions and classes."""
    nodes = []
    for node in module_tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nodes += [*node.decorator_list, *getattr(node, "bases", []), *getattr(node, "keywords", [])]
            if not isinstance(node, ast.ClassDef):
                nodes += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
        else:
            nodes.append(node)
    return nodes


def outside_functions(nodes: list[ast.AST]):
    todo = list(nodes)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, DEFINITIONS):
            todo.extend(ast.iter_child_nodes(node))


def import_bindings(module: str, nodes: list[ast.AST], nested: bool = False):
    """What the import statements in `nodes` (in functions they define only if `nested`) bind, each
    name to ("module", m) or ("name", m, name); the adfm modules they import; the third-party names
    they import."""
    bound, modules, external = {}, [], []
    for node in (child for top in nodes for child in ast.walk(top)) if nested else outside_functions(nodes):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "adfm":
                    modules.append(alias.name)
                    bound[alias.asname or "adfm"] = ("module", alias.name if alias.asname else "adfm")
                else:
                    external.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parts = module.split(".")
                package = parts[: len(parts) - node.level + (module_file(module).name == "__init__.py")]
                source = ".".join([*package, *([source] if source else [])])
            if source.split(".")[0] != "adfm":
                if source != "__future__":
                    external.append(source)
                continue
            modules.append(source)
            for alias in node.names:
                if alias.name == "*":
                    bound.update({name: ("name", source, name) for name in definitions(source)})
                elif module_file(f"{source}.{alias.name}"):
                    modules.append(f"{source}.{alias.name}")
                    bound[alias.asname or alias.name] = ("module", f"{source}.{alias.name}")
                else:
                    bound[alias.asname or alias.name] = ("name", source, alias.name)
    return bound, modules, external


@cache
def module_bindings(module: str) -> dict[str, tuple]:
    return import_bindings(module, module_level(module))[0]


class Imports:
    """Third-party packages that running part of src/adfm may import, followed function by function:
    the stages import heavy packages inside functions, so a module-level walk would ask the data env
    for torch because `adfm predict-mmad` reaches the Hugging Face backend only for a run.

    Over-approximates where it cannot tell: a referenced class brings all its methods, a module used
    as a value (such as adfm.data.datasets.LAYOUTS) all its functions, a local variable named like a
    function of its module that function."""

    def __init__(self):
        self.imported: set[str] = set()
        self.reached: set[tuple[str, str]] = set()
        self.found: dict[str, set[str]] = {}  # import name -> adfm modules importing it

    def import_module(self, module: str) -> None:
        """What importing a module runs: its packages' __init__ and its own module-level code."""
        if module in self.imported:
            return
        self.imported.add(module)
        parts = module.split(".")
        for end in range(1, len(parts)):
            self.import_module(".".join(parts[:end]))
        self.execute_imports(module, module_level(module))
        self.run(module, module_level(module), {})

    def execute_imports(self, module: str, nodes: list[ast.AST], nested: bool = False) -> dict[str, tuple]:
        bound, modules, external = import_bindings(module, nodes, nested)
        for name in external:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names:
                self.found.setdefault(top, set()).add(module)
        for imported in modules:
            self.import_module(imported)
        return bound

    def run(self, module: str, nodes: list[ast.AST], local: dict[str, tuple], skip: frozenset = frozenset()) -> None:
        """Follow every name the code in `nodes` refers to (but not into subtrees in `skip`)."""
        bound = {**module_bindings(module), **local}
        defined = definitions(module)
        todo = list(nodes)
        while todo:
            node = todo.pop()
            if id(node) in skip:
                continue
            todo.extend(ast.iter_child_nodes(node))
            if not isinstance(node, ast.Name):
                continue
            chain, top = [node.id], node
            while isinstance(getattr(top, "parent", None), ast.Attribute) and top.parent.value is top:
                top = top.parent
                chain.append(top.attr)
            if node.id in bound:
                self.follow(bound[node.id], chain[1:])
            elif node.id in defined:
                self.reach(module, node.id)

    def follow(self, target: tuple, attributes: list[str]) -> None:
        if target[0] == "name":
            self.reach(target[1], target[2])
            return
        module = target[1]
        self.import_module(module)
        while attributes and module_file(f"{module}.{attributes[0]}"):
            module = f"{module}.{attributes.pop(0)}"
            self.import_module(module)
        if attributes:
            self.reach(module, attributes[0])
        else:  # the module as a value: any of its functions may be called through it
            for name in definitions(module):
                self.reach(module, name)

    def reach(self, module: str, name: str, skip: frozenset = frozenset()) -> None:
        """What calling (or using) `module.name` may run."""
        if (module, name) in self.reached:
            return
        self.reached.add((module, name))
        self.import_module(module)
        node = definitions(module).get(name)
        if node is not None:
            # imports anywhere inside, nested functions included: they run when it is called
            self.run(module, [node], self.execute_imports(module, node.body, nested=True), skip)
        elif module_file(f"{module}.{name}"):
            self.follow(("module", f"{module}.{name}"), [])
        elif name in module_bindings(module):  # a name the module imported from another one
            self.follow(module_bindings(module)[name], [])

    def stage(self, stage: str) -> None:
        """`python -m adfm <stage>`: the CLI, then the stage module's register() and the handler it
        sets for this subcommand (not those of the module's other subcommands)."""
        self.import_module("adfm.__main__")
        module = stage_modules()[stage]
        register = definitions(module).get("register")
        assert register is not None, f"{module} has no register()"
        parsers, handlers = {}, {}
        for node in ast.walk(register):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "attr", None) == "add_parser"
                and node.value.args
            ):
                parsers[node.targets[0].id] = ast.literal_eval(node.value.args[0])
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "set_defaults":
                for keyword in node.keywords:
                    if keyword.arg == "func":
                        handlers[getattr(node.func.value, "id", None)] = keyword.value
        mine = [value for parser, value in handlers.items() if parsers.get(parser) == stage]
        assert mine, f"{module}.register(): no `set_defaults(func=...)` for the parser of `{stage}`"
        others = frozenset(id(value) for value in handlers.values() if value is not mine[0])
        self.reach(module, "register", skip=others)

    def main_module(self, module: str) -> None:
        """`python -m <module>`: all of its module-level code, `if __name__ == "__main__"` included."""
        self.import_module(module)


@cache
def import_distributions() -> dict[str, set[str]]:
    return {name: {canonicalize_name(dist) for dist in dists} for name, dists in packages_distributions().items()}


def distributions_of(import_name: str) -> set[str]:
    names = set(import_distributions().get(import_name, set()))
    if import_name in IMPORT_DISTRIBUTIONS:
        names.add(canonicalize_name(IMPORT_DISTRIBUTIONS[import_name]))
    return names or {canonicalize_name(import_name)}


def backend_variants(rule: Rule) -> list[tuple[str, str]] | None:
    """(conda env path, `adfm` subcommand) per entry of common.smk's BACKENDS, for a rule that takes
    both from its model's backend (`backend_of`); None for a rule with a literal conda: path."""
    conda = rule.arguments("conda")
    if conda is None or "backend_of" not in ast.unparse(conda):
        return None
    variants = []
    for entry in smk_names()["BACKENDS"].values:
        fields = {
            key.value: value.value
            for key, value in zip(entry.keys, entry.values, strict=True)
            if isinstance(value, ast.Constant)
        }
        variants.append((f"../../envs/{fields['env']}.yaml", fields["stage"]))
    return variants


def rule_environments(rule: Rule) -> list[tuple[str, Commands]]:
    """(conda env path as written, commands run in it) of a rule: one pair, or one per backend."""
    conda = rule.arguments("conda")
    if conda is None or "shell" not in rule.directives:
        return []
    commands = rule_commands(rule)
    variants = backend_variants(rule)
    if variants is None:
        path = conda.args[0].value if len(conda.args) == 1 and isinstance(conda.args[0], ast.Constant) else None
        return [(path, commands)]
    return [
        (path, Commands([stage, *commands.stages], commands.modules, commands.distributions))
        for path, stage in variants
    ]


def test_rule_parser_sees_every_stage():
    rules = parse_rules()
    assert len(rules) >= 13, f"only {len(rules)} rules parsed from {[rel(p) for p in RULE_FILES]}"
    stages = {stage for rule in rules for _, commands in rule_environments(rule) for stage in commands.stages}
    assert {
        "index",
        "boxes",
        "split",
        "predict",
        "predict-clip",
        "predict-api",
        "train",
        "warm-start",
        "score",
        "table",
        "figure",
    } <= stages
    assert not stages - set(stage_modules()), f"stages unknown to src/adfm/cli.py: {stages - set(stage_modules())}"


def test_import_analysis_follows_functions():
    """The analysis both sees imports inside functions and leaves out functions a stage never calls."""
    train = Imports()
    train.stage("train")
    assert {"torch", "trl", "peft", "datasets", "transformers"} <= set(train.found), sorted(train.found)
    api = Imports()
    api.stage("predict-api")
    assert "PIL" in api.found and "torch" not in api.found, sorted(api.found)


def test_rule_environments_install_stage_imports():
    problems = []
    for rule in parse_rules():
        where = f"rule {rule.name} ({rel(rule.path)})"
        if rule.arguments("conda") is not None and "shell" not in rule.directives:
            problems.append(f"{where}: has conda: but no shell:; this test cannot tell what runs in its env")
        for conda, commands in rule_environments(rule):
            problems += env_problems(where, rule.path.parent, conda, commands)
    assert not problems, "rules whose conda env lacks what they run:\n  " + "\n  ".join(problems)


def env_problems(where: str, folder: Path, conda: str | None, commands: Commands) -> list[str]:
    """What a rule's commands import that its conda environment does not install."""
    problems = []
    if conda is None:
        return [f"{where}: conda: is neither one literal path nor a BACKENDS entry; this test cannot follow it"]
    env_path = (folder / conda).resolve()
    if not env_path.is_file():
        return [f"{where}: conda env {conda} does not exist"]
    env = read_env(env_path)
    if not commands.stages and not commands.modules:
        problems.append(f"{where}: no `python -m adfm <stage>` in its shell")
    for dist in sorted(commands.distributions):
        if not env.provides({dist}):
            problems.append(f"{where}: its shell may run `{dist}` (a launcher), which {rel(env_path)} lacks")
    for entry in [*commands.stages, *commands.modules]:
        imports = Imports()
        try:
            if entry in commands.stages:
                if entry not in stage_modules():
                    problems.append(f"{where}: `adfm {entry}` is no subcommand in src/adfm/cli.py")
                    continue
                imports.stage(entry)
                what = f"`adfm {entry}` ({stage_modules()[entry]})"
            else:
                imports.main_module(entry)
                what = f"`python -m {entry}`"
        except AssertionError as error:  # code this analysis cannot follow, named by the error
            problems.append(f"{where}: {error}")
            continue
        for name, modules in sorted(imports.found.items()):
            if not env.provides(distributions_of(name)):
                problems.append(
                    f"{where}: {what} imports {name} (in {', '.join(sorted(modules))}), but "
                    f"{rel(env_path)} lacks {' or '.join(sorted(distributions_of(name)))}"
                )
    return problems
