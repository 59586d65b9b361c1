"""Reading by vote (model/vote.py, support.inference.decode_batch): the copies an image is read
as, the text whose copies' probabilities sum highest kept, the row of the copy that read it
returned; a vote of 1 is the plain decoding; the flags that set it, eval.py and export.py on a
checkpoint that votes (the fine-tuning default: test_finetune.py)."""
import pytest
import torch

import eval as ev
import predict
import train
from model import check_config, vote
from support import inference

H, W = 32, 64  # a shift of 1/16 of the height is 2 pixels, 1/32 one


def dot(column, row=H // 2):
    """A black (1, 3, H, W) image with one white pixel."""
    image = torch.zeros(1, 3, H, W)
    image[..., row, column] = 1.0
    return image


def bright(image):
    """(row, column) of an image's brightest pixel."""
    flat = image[0, 0].flatten().argmax().item()
    return divmod(flat, W)


# -- the copies ----------------------------------------------------------------------------------

def test_shifts_move_the_image_by_whole_pixels_along_the_text_first():
    made = vote.copies(dot(20), 7)  # id, right 2, left 2, shrunk, grown, down 1, up 1
    assert made.shape == (7, 3, H, W)
    assert torch.equal(made[:1], dot(20))  # the first copy is the image itself, bit for bit
    assert bright(made[1:2]) == (H // 2, 22)
    assert bright(made[2:3]) == (H // 2, 18)
    assert bright(made[5:6]) == (H // 2 + 1, 20)
    assert bright(made[6:7]) == (H // 2 - 1, 20)


def test_shifts_fill_the_gap_with_the_edge_pixels_and_never_wrap():
    image = torch.zeros(1, 3, H, W)
    image[..., :, 0] = 1.0  # a white left edge
    moved = vote.shifted(image, 2, 0)
    assert moved[0, 0, :, :3].eq(1.0).all()  # the edge column repeated into the gap
    assert moved[0, 0, :, 3:].eq(0.0).all()
    moved = vote.shifted(image, -2, 0)  # moved off the left: nothing comes round on the right
    assert moved.eq(0.0).all()


def test_rescaled_copies_keep_the_size_and_the_centre():
    image = torch.full((1, 3, H, W), 0.25)
    for scale in (0.9, 0.94, 1.06, 1.1):
        copy = vote.scaled(image, scale)
        assert copy.shape == image.shape
        torch.testing.assert_close(copy, image)  # an even image stays even: no dark frame
    # a dot at the centre stays there (within the pixel a whole-pixel crop rounds off); one off
    # centre moves away from it when grown, toward it when shrunk
    row, column = bright(vote.scaled(dot(W // 2, H // 2), 1.1))
    assert abs(row - H // 2) <= 1 and abs(column - W // 2) <= 1
    assert bright(vote.scaled(dot(W // 2 + 20, H // 2), 1.1))[1] >= W // 2 + 21
    assert bright(vote.scaled(dot(W // 2 + 20, H // 2), 0.9))[1] <= W // 2 + 19


def test_shifts_follow_the_input_height():
    assert vote.pixels(1 / 16, 32) == 2 and vote.pixels(-1 / 16, 48) == -3
    assert vote.pixels(1 / 32, 16) == 1  # never below a pixel
    assert vote.pixels(0, 32) == 0


def test_inputs_narrower_than_a_shift_keep_their_shape():
    for shape in ((2, 3, 64, 8), (1, 3, 8, 4)):  # an 8-pixel move of a 8-pixel-wide input
        assert vote.copies(torch.rand(shape), vote.MAX_VOTES).shape == (
            vote.MAX_VOTES * shape[0], *shape[1:])


def test_a_vote_outside_the_copies_is_refused():
    for votes in (0, vote.MAX_VOTES + 1):
        with pytest.raises(ValueError, match="votes"):
            vote.copies(dot(3), votes)


# -- the vote ------------------------------------------------------------------------------------

def test_the_text_with_the_highest_summed_probability_wins():
    # 3 copies of 3 images, stacked copy by copy (rows k * 3 + i)
    texts = [[7], [1], [7],  # copy 0: the image itself
             [1], [1], [1],  # copy 1
             [1], [2], [1]]  # copy 2
    confidences = [0.9, 0.5, 0.9,
                   0.5, 0.5, 0.3,
                   0.5, 0.9, 0.3]
    rows = vote.winners(texts, confidences, 3)
    assert rows[0] == 3  # "1" twice at 0.5 (1.0) beats the image's own "7" at 0.9: copy 1's row
    assert rows[1] == 1  # "1" at 0.5 twice beats "2" at 0.9: the image's own row, which read it
    assert rows[2] == 2  # "1" twice at 0.3 (0.6) loses to the image's own "7" at 0.9


class DotReader(torch.nn.Module):
    """A stand-in model that reads the column of an image's white pixel from a table: a pixel
    or two decides the reading, as for a model fine-tuned on a few photos."""

    TABLE = {10: ([7], 0.9), 12: ([1], 0.6), 8: ([1], 0.5),  # the image alone reads 7, the
             30: ([3], 0.8), 32: ([3], 0.7), 28: ([9], 0.9)}  # copies 1 (1.1); 3 (1.5) beats 9

    def __init__(self, votes):
        super().__init__()
        self.config = {"votes": votes}

    def encode(self, images):
        return images.flatten(2).transpose(1, 2), (H, W)

    def decode(self, images, encoded=None):
        texts, probs = [], []
        for image in images:
            text, prob = self.TABLE[bright(image.unsqueeze(0))[1]]
            texts.append(text)
            probs.append([prob, 1.0])
        probs = torch.tensor(probs)
        return {"tokens": texts, "probs": probs, "attention": None,
                "logprob": probs.log().sum(dim=1), "feature_hw": (H, W)}


def test_decode_batch_keeps_the_majority_and_the_row_that_read_it():
    images = torch.cat([dot(10), dot(30)])
    out, (features, _) = inference.decode_batch(DotReader(3), images, 1, "cpu", "fp32")
    assert out["tokens"] == [[1], [3]]
    # image 0 kept copy 1 (moved right: column 12), image 1 its own row (column 30)
    torch.testing.assert_close(out["logprob"], torch.tensor([0.6, 0.8]).log())
    torch.testing.assert_close(out["probs"], torch.tensor([[0.6, 1.0], [0.8, 1.0]]))
    assert torch.equal(features, images.flatten(2).transpose(1, 2))  # the images' own
    # the checkpoint's vote, overridden: 1 reads the image alone
    out, _ = inference.decode_batch(DotReader(3), images, 1, "cpu", "fp32", votes=1)
    assert out["tokens"] == [[7], [3]]


# -- where the vote is set -----------------------------------------------------------------------

def test_the_seed_reads_the_image_alone_and_the_config_checks_votes():
    assert check_config({})["votes"] == 1
    for bad in (0, vote.MAX_VOTES + 1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="votes"):
            check_config({"votes": bad})
    assert train.parse_args([]).votes == 1  # the seed's recipe reads the image alone


@pytest.mark.parametrize("script", [train, ev, predict])
def test_votes_outside_the_copies_exit_2(script, capsys):
    argv = {train: [], ev: [], predict: ["x.png", "--csv", "out.csv"]}[script]
    for votes in ("0", str(vote.MAX_VOTES + 1)):
        with pytest.raises(SystemExit) as e:
            script.parse_args([*argv, "--votes", votes])
        assert e.value.code == 2
        assert "--votes must be in" in capsys.readouterr().err


# -- through the scripts -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def voting_run(tmp_path_factory):
    """A tiny ctc run trained with --votes 3 (its checkpoint decodes by a vote of 3), and its
    training split."""
    from helpers import write_split
    root = tmp_path_factory.mktemp("vote")
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(12)]
    split = write_split(str(root), numbers=numbers, split="train", image_dir="train")
    out = root / "run"
    assert train.main(["--train-json", split, "--plan", "8 M 16", "--hidden", "16",
                       "--image-size", "32", "--crop-size", "28", "--batch-size", "4",
                       "--threads", "1", "--workers", "0", "--val-size", "0", "--head", "ctc",
                       "--epochs", "2", "--votes", "3", "--out", str(out)]) == 0
    return str(out / "last.pt"), split


def majority_accuracy(path, split, votes):
    """Whole-text accuracy of a vote over the copies, each copy decoded in a batch of its own."""
    from data import SVHNDataset
    from formats.records import load_split
    from support.tokenizer import label_ids, tokenizer_from_vocab
    model, ckpt = inference.open_model(path, torch.device("cpu"))
    source = load_split(split)
    dataset = SVHNDataset.evaluation(source, tokenizer_from_vocab(ckpt["vocab"]), model.config)
    right = 0
    for i in range(len(dataset)):
        image, tokens, _ = dataset[i]
        summed = {}
        for copy in vote.copies(image.unsqueeze(0), votes):
            out = model.decode(copy.unsqueeze(0))
            text = tuple(out["tokens"][0])
            summed[text] = summed.get(text, 0.0) + out["logprob"].exp().item()
        best = max(summed, key=summed.get)  # the highest summed probability
        right += list(best) == label_ids(tokens.tolist())
    return right / len(dataset)


def test_eval_reads_by_the_checkpoints_vote(voting_run, tmp_path):
    path, split = voting_run
    assert inference.open_model(path, None)[0].config["votes"] == 3
    report = ev.main(["--checkpoint", path, "--json", split, "--workers", "0", "--report",
                      str(tmp_path / "r.json")])
    assert report["votes"] == 3
    assert report["sequence_accuracy"] == pytest.approx(majority_accuracy(path, split, 3))
    alone = ev.main(["--checkpoint", path, "--json", split, "--workers", "0", "--votes", "1",
                     "--report", str(tmp_path / "r1.json")])
    assert alone["votes"] == 1
    assert alone["sequence_accuracy"] == pytest.approx(majority_accuracy(path, split, 1))


def test_export_names_the_vote_its_graph_leaves_out(voting_run, tmp_path):
    import json

    import export
    pytest.importorskip("onnxruntime")
    path, _ = voting_run
    out = tmp_path / "m.onnx"
    assert export.main(["--checkpoint", path, "--out", str(out)]) == 0
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["votes"] == 3
    assert sidecar["copies"] == [[0, 0, 1.0], [1 / 16, 0, 1.0], [-1 / 16, 0, 1.0]]
