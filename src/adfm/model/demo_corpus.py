"""What the demo model's tokenizer is trained on (adfm.model.demo.build_tokenizer): the sentences
and words our prompts use, responses in the reasoning format with JSON boxes, and digits, so that
a BPE vocabulary of about a thousand tokens covers them in few tokens each."""

from __future__ import annotations

# every word the prompts and responses use, one space apart
WORDS = (
    "think rethink answer yes no bbox_2d label defect anomaly anomalous normal image images reference query "
    "object surface region regions scratch crack hole stain dent missing contamination color cut bent broken is "
    "there any in the of a an and or to this that first second compare with following look focus each check "
    "checked inspect inspection industrial inspector product part texture structure left right top bottom global "
    "scan suspicious focused final decision you are output format box boxes coordinates pixels Yes No The A An Is "
    "Are Please Answer Think Rethink Look Compare First Then Finally Output Following system user assistant "
    "helpful"
)

# the prompts the demo's runs see, those of config.yaml included
TEMPLATES = (
    "You are a helpful assistant.",
    "The first image is a normal reference image. The second image is the query image.",
    "Compare the query image with the normal reference image. Is there any defect in the object?",
    "First think: scan the whole query image and list suspicious regions as JSON boxes "
    '[{"bbox_2d": [x1, y1, x2, y2], "label": "defect"}] inside <think> </think>. Then rethink: look at '
    "each region again inside <rethink> </rethink>. Finally give the answer yes or no inside <answer> </answer>.",
    "Output the thinking process in <think> </think>, the rethinking in <rethink> </rethink> and the final "
    "answer (yes or no) in <answer> </answer> tags.",
    "Is there any defect in the object? A. Yes. B. No.",
    # the prompts of config.yaml
    "You are an industrial quality inspector. The first image shows a normal, defect-free sample. "
    "The second image is the query. Compare the query with the normal sample and decide whether the query "
    "has any defect.",
    "First, inside <think></think>, scan the whole query image and list the suspicious regions as JSON boxes "
    'in pixel coordinates of the query image, for example [{"bbox_2d": [x1, y1, x2, y2], "label": "scratch"}].',
    "Then, inside <rethink></rethink>, examine each region closely and decide whether it is a real defect or "
    "a normal variation.",
    "Finally, inside <answer></answer>, answer yes if the query is defective and no if it is normal.",
    "Inside <think></think>, scan the whole query image and list the suspicious regions as JSON boxes, and "
    "reason about them. Then, inside <answer></answer>, answer yes if the query is defective and no if it is "
    "normal.",
    "Following is the query image:",
)


def _responses() -> list[str]:
    """Responses in both formats (with and without rethink), with and without a box."""
    responses = []
    for i in range(40):
        x1, y1 = (7 * i) % 97, (13 * i) % 89
        box = f'{{"bbox_2d": [{x1}, {y1}, {x1 + 10 + i}, {y1 + 12 + i}], "label": "defect"}}'
        regions = f"[{box}]" if i % 2 else "[]"
        answer = "yes" if i % 2 else "no"
        responses.append(
            f"<think>global scan of the query image: {regions}</think>"
            f"<rethink>focused look at each region: checked</rethink><answer>{answer}</answer>"
        )
        responses.append(f"<think>{regions}</think><answer>{answer}</answer>")
    return responses


def corpus() -> list[str]:
    """The training text: prompts, responses, digits, then the words (together four times, then each alone)."""
    digits = [" ".join(str(d) for d in range(10)), "0123456789", "[0, 0, 0, 0]", '{"label": "defect"}, ']
    return [*TEMPLATES, *_responses(), *digits, *[WORDS] * 4, *WORDS.split(" ")]
