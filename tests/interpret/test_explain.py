import numpy as np
import pytest

from keras_attn.cli import main
from keras_attn.interpret import METHODS, explain, write_explanation
from keras_attn.models import Classifier


@pytest.fixture(scope="module")
def classifier():
    return Classifier.from_preset("tiny", num_classes=2, num_layers=1)


def test_attention_explanation_and_clear_errors(classifier, tmp_path):
    explanation = explain(classifier, "hi", "attention")
    assert explanation.method == "attention" and explanation.maps.kinds == ("encoder",)
    assert explanation.maps.query_tokens("encoder") == ["[CLS]", "h", "i", "[SEP]"]
    (listed,) = explain(classifier, ["hi"], "attention")
    assert listed.maps.tokens == explanation.maps.tokens
    with pytest.raises(ValueError, match="`method` must be one of 'attention'"):
        explain(classifier, "hi", "saliency")
    with pytest.raises(ValueError, match="takes no `target`"):
        explain(classifier, "hi", "attention", target=1)
    with pytest.raises(ValueError, match="options"):
        explain(classifier, "hi", "attention", steps=10)
    with pytest.raises(ValueError, match="`layer` must be an integer in \\[0, 1\\)"):
        write_explanation(explanation, tmp_path / "x.png", layer=1)
    with pytest.raises(ValueError, match="`kind` must be one of 'encoder'"):
        write_explanation(explanation, tmp_path / "x.png", kind="cross")
    with pytest.raises(ValueError, match=r"\.html, \.png or \.svg"):
        write_explanation(explanation, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []


def test_cli_explain_writes_the_viewer_and_a_figure(classifier, tmp_path, capsys):
    run = tmp_path / "run"
    classifier.save_to_preset(run)
    html, png = tmp_path / "report.html", tmp_path / "report.png"
    assert main(["explain", str(run), "abc", "--method", "attention", "--out", str(html)]) == 0
    page = html.read_text()
    assert '"tokens":["[CLS]","a","b","c","[SEP]"]' in page
    assert main(["explain", str(run), "abc", "--layer", "0", "--head", "all",
                 "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "wrote" in capsys.readouterr().out
    assert main(["explain", str(run), "abc", "--head", "7", "--layer", "0",
                 "--out", str(tmp_path / "bad.png")]) == 2
    assert "`head` must be an integer in [0, 4)" in capsys.readouterr().err


def test_cli_method_choices_come_from_the_table():
    from keras_attn.cli import build_parser

    explain_parser = build_parser()._subparsers._group_actions[0].choices["explain"]
    method = next(a for a in explain_parser._actions if a.dest == "method")
    assert list(method.choices) == list(METHODS)


def test_rollout_and_flow_are_methods_with_views_per_kind():
    from keras_attn.interpret import attention_flow, attention_rollout
    from keras_attn.models import Translator

    model = Translator.from_preset("tiny", source_length=16, target_length=8,
                                   num_encoder_layers=2, num_decoder_layers=2)
    rolled = explain(model, "one two", "rollout", targets="eins")
    assert sorted(rolled.views["rollout"]) == ["cross", "decoder", "encoder"]
    np.testing.assert_allclose(rolled.views["rollout"]["encoder"],
                               attention_rollout(rolled.maps, kind="encoder"))
    flowed = explain(model, "one two", "flow", targets="eins", residual=0.3)
    assert sorted(flowed.views["flow"]) == ["decoder", "encoder"]
    np.testing.assert_allclose(flowed.views["flow"]["decoder"],
                               attention_flow(flowed.maps, kind="decoder", residual=0.3))


@pytest.mark.parametrize("method", ["relevance", "ig", "attribution"])
def test_gradient_methods_explain_a_chosen_output(method):
    from keras_attn.interpret import attention_attribution, integrated_gradients, relevance
    from keras_attn.models import Generator

    model = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    options = {"steps": 8} if method != "relevance" else {}
    found = explain(model, "abc", method, target={"position": 2}, targets="d", **options)
    assert found.maps.tokens["tokens"] == ["[BOS]", "a", "b", "c", "d"]
    if method == "relevance":
        (expected,) = relevance(model, ["abc"], target={"position": 2}, targets=["d"])
        np.testing.assert_allclose(found.token_scores["relevance"]["tokens"],
                                   expected.token_scores["tokens"])
    elif method == "ig":
        (expected,) = integrated_gradients(model, ["abc"], target={"position": 2},
                                           targets=["d"], steps=8)
        np.testing.assert_allclose(found.token_scores["integrated gradients"]["tokens"],
                                   expected.scores["tokens"], rtol=1e-5, atol=1e-6)
    else:
        (expected,) = attention_attribution(model, ["abc"], target={"position": 2},
                                            targets=["d"], steps=8)
        np.testing.assert_allclose(found.views["attribution"]["decoder"],
                                   expected.attention["decoder"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_new_tokens"):
        explain(model, "abc", method, max_new_tokens=2)
