"""An open vocabulary in a model's gazetteer: WordNet's organism names, their written forms, and the
training data's veto."""
from __future__ import annotations

import pytest

from clinlake.pipelines.engine.gazetteer import Term
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.training.ner.gazetteer import (LEXICON_PRIOR, Lexicon, learn_gazetteer, name_variants,
                                                       plural_forms, read_lexicons)
from clinlake.pipelines.training.ner.wordnet import (WordNetError, organism_names, read_lexicon_file, read_noun_synsets,
                                                     write_organism_lexicon)

# A miniature data.noun in WordNet's format: offset lex_filenum ss_type w_cnt word lex_id ... p_cnt pointers | gloss
# organism ─┬─ person ── guinea_pig (a person used in an experiment)
#           └─ fish ─┬─ trout ── rainbow_trout, Salmo_gairdneri
#                    └─ food_fish (instance hyponym)
# flag: not an organism
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by Princeton University
00000001 03 n 02 organism 0 being 0 002 ~ 00000002 n 0000 ~ 00000003 n 0000 | a living thing
00000002 03 n 03 person 0 individual 0 someone 0 001 ~ 00000004 n 0000 | a human being
00000003 05 n 01 fish 0 002 ~ 00000005 n 0000 ~i 00000007 n 0000 | any of various cold-blooded aquatic vertebrates
00000004 18 n 01 guinea_pig 0 000 | a person used as the subject of an experiment
00000005 05 n 01 trout 0 001 ~ 00000006 n 0000 | any of various game and food fishes
00000006 05 n 02 rainbow_trout 0 Salmo_gairdneri 0 000 | found in Pacific coastal waters
00000007 05 n 01 food_fish 0 000 | any fish used for food by human beings
00000008 06 n 02 flag 0 color_bearer(p) 0 000 | emblem usually consisting of a rectangular piece of cloth
"""


def test_organism_names_are_the_multi_word_lemmas_below_organism_except_persons(tmp_path):
    path = tmp_path / "data.noun"
    path.write_text(DATA_NOUN, encoding="utf-8")
    synsets = read_noun_synsets(path)
    assert synsets["00000006"].lemmas == ("rainbow_trout", "Salmo_gairdneri")
    assert synsets["00000003"].hyponyms == ("00000005", "00000007")  # "~" and "~i"
    # "trout" and "fish" are one word (higher taxa); "guinea pig" is below person; "color bearer" no organism
    assert organism_names(synsets) == ["food fish", "rainbow trout", "Salmo gairdneri"]
    lexicon = write_organism_lexicon(tmp_path / "organisms.txt", organism_names(synsets), source="a test")
    text = lexicon.read_text(encoding="utf-8")
    assert "Copyright 2006 by Princeton University" in text  # the licence travels with every copy
    assert read_lexicon_file(lexicon)[0] == ["food fish", "rainbow trout", "Salmo gairdneri"]


def test_clinlake_train_wordnet_writes_the_lexicon_from_a_dict_folder(tmp_path, capsys):
    from clinlake.jobs import train

    (tmp_path / "dict").mkdir()
    (tmp_path / "dict" / "data.noun").write_text(DATA_NOUN, encoding="utf-8")
    out = tmp_path / "organisms.txt"
    assert train.main(["wordnet", "--dict", str(tmp_path / "dict"), "--out", str(out)]) == 0
    assert "3 organism names" in capsys.readouterr().out and read_lexicon_file(out)[0][0] == "food fish"
    assert train.main(["wordnet", "--dict", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "clinlake train wordnet: no WordNet file" in capsys.readouterr().out


def test_a_file_that_is_not_wordnet_is_refused_by_name(tmp_path):
    with pytest.raises(WordNetError, match="no WordNet file"):
        read_noun_synsets(tmp_path / "data.noun")
    (tmp_path / "data.noun").write_text("00000001 03 n zz organism\n", encoding="utf-8")
    with pytest.raises(WordNetError, match="data.noun:1: not a WordNet data line"):
        read_noun_synsets(tmp_path / "data.noun")
    (tmp_path / "data.noun").write_text("00000001 03 n 01 fish 0 000 | a fish\n", encoding="utf-8")
    with pytest.raises(WordNetError, match=r"0 synsets hold all of \['being', 'organism'\]"):
        organism_names(read_noun_synsets(tmp_path / "data.noun"))


def test_a_name_is_matched_in_its_plural_forms_and_with_spaces_or_hyphens():
    assert plural_forms("pig") == {"pig", "pigs"} and plural_forms("mouse") == {"mouse", "mice"} | {"mouses"}
    assert {"bacilli", "bacilluses"} <= plural_forms("bacillus") and "larvae" in plural_forms("larva")
    assert plural_forms("fly") == {"fly", "flies"} and plural_forms("Fish") == {"Fish", "Fishes"}
    assert name_variants("guinea pig") == {("guinea", "pig"), ("guinea", "pigs"), ("guinea", "-", "pig"),
                                           ("guinea", "-", "pigs")}
    assert ("field", "mice") in name_variants("field mouse")
    assert name_variants("E. coli") == {("E", ".", "coli")}  # pieces as the model cuts them; no "E.-coli"
    assert name_variants("Salmo gairdneri") == {("Salmo", "gairdneri"), ("Salmo", "-", "gairdneri")}  # no plural


def _example(tokens: str, tags: str):
    return tokens.split(), tags.split()


def test_lexicon_names_enter_unless_the_training_examples_mostly_leave_them_untagged():
    examples = [_example("rainbow trout were fed", "B-Species I-Species O O"),
                _example("food fish prices", "O O O"), _example("food fish stocks", "O O O"),
                _example("the food fish", "O B-Species I-Species"),  # tagged 1 of 3: vetoed
                _example("mice and mice", "B-Species O B-Species")]
    lexicon = Lexicon("Species", ("rainbow trout", "food fish", "Salmo gairdneri", "house mouse"), "a test")
    terms = learn_gazetteer(examples, lexicons=[lexicon])
    assert terms[("rainbow", "trout")] == Term("Species", 1.0)  # seen once, tagged once
    assert ("food", "fish") not in terms and ("food", "fishes") in terms  # only the written form seen is vetoed
    assert terms[("salmo", "-", "gairdneri")] == Term("Species", LEXICON_PRIOR)  # never seen: the prior
    assert terms[("house", "mice")] == Term("Species", LEXICON_PRIOR)
    assert ("mice",) in terms and terms[("mice",)] == Term("Species", 1.0)  # learned from the examples
    assert learn_gazetteer(examples) == {("mice",): Term("Species", 1.0)}  # no lexicon: as before


def test_the_gazetteer_file_carries_each_lexicons_notice_and_reads_back(tmp_path):
    from clinlake.pipelines.engine.gazetteer import read_gazetteer
    from clinlake.pipelines.training.ner.gazetteer import write_gazetteer

    lexicon = Lexicon("Species", ("rainbow trout",), "organisms.txt", notice=("WordNet 3.0 Copyright 2006 by Princeton",))
    terms = learn_gazetteer([_example("trout", "O")], lexicons=[lexicon])
    path = tmp_path / "gazetteer.tsv"
    write_gazetteer(path, terms, source="a test", lexicons=[lexicon])
    text = path.read_text(encoding="utf-8")
    assert "# plus the names of organisms.txt as Species" in text and "#   WordNet 3.0 Copyright 2006" in text
    assert read_gazetteer(path) == terms and len(terms) == 4  # trout(s), space or hyphen


def test_a_model_names_its_lexicon_in_model_json_and_cv_scores_the_gazetteer_with_it():
    from clinlake.pipelines.training.ner.cv import Recipe, score_fold

    with pytest.raises(ValueError, match="each of gazetteer_lexicons needs exactly 'file' and 'label'"):
        read_lexicons({"gazetteer_lexicons": [{"file": "conf/lexicons/wordnet_organisms.txt", "labels": "Species"}]})
    assert read_lexicons({}) == ()
    (linnaeus,) = Recipe.of_model(Resolver().model_dir("linnaeus")).lexicons
    assert linnaeus.label == "Species" and linnaeus.source == "conf/lexicons/wordnet_organisms.txt"
    assert {"rainbow trout", "guinea pig", "Atlantic salmon"} <= set(linnaeus.names) and len(linnaeus.names) > 10_000
    train = [_example("trout eggs", "O O")]
    held = [_example("young rainbow trout and guinea - pigs .",
                     "O B-Species I-Species O B-Species I-Species I-Species O")]
    predicted = [(["O"] * 8, [0.9] * 8)]
    without = score_fold(train, held, range(0, 1), 0, predicted, 20)
    with_names = score_fold(train, held, range(0, 1), 0, predicted, 20, lexicons=[linnaeus])
    assert without["variants"]["gazetteer"]["f1"] == 0.0
    assert with_names["variants"]["gazetteer"]["recall"] == 1.0 and with_names["variants"]["network"]["f1"] == 0.0


def test_the_card_credits_wordnet_only_for_wordnets_names():
    from clinlake.pipelines.training.cv_card import _lexicon_source

    assert "WordNet 3.1 (Princeton University" in _lexicon_source("conf/lexicons/wordnet_organisms.txt")
    assert "WordNet" not in _lexicon_source("conf/lexicons/my_species.txt")
    card = (Resolver().model_dir("linnaeus") / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "15,048 names of `conf/lexicons/wordnet_organisms.txt` as Species" in card
