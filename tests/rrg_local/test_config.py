from dataclasses import replace
from pathlib import Path

from rrg_local.config import Settings, load_settings, save_settings


def test_rrg_home_overrides_the_data_dir(tmp_path):
    s = load_settings({"RRG_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h"
    assert s.db_path == tmp_path / "h" / "library.db"


def test_settings_round_trip_through_the_config_file(tmp_path):
    home = tmp_path / "h"
    saved = replace(Settings(home=home), folders=(tmp_path / "pics",), max_pixels=1000, debounce_s=0.5)
    save_settings(saved)
    loaded = load_settings({"RRG_HOME": str(home)})
    assert loaded == saved
    assert loaded.notices == ()


def test_bad_config_falls_back_to_defaults_with_a_notice(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text("folders = [1, 2\n")  # not TOML
    s = load_settings({"RRG_HOME": str(home)})
    assert s == Settings(home=home)
    assert len(s.notices) == 1 and "using defaults" in s.notices[0]


def test_bad_values_keep_their_defaults_and_good_ones_apply(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text('max_pixels = "lots"\ndebounce_s = 2.5\nwat = 1\nfolders = ["/x"]\n')
    s = load_settings({"RRG_HOME": str(home)})
    assert s.max_pixels == Settings(home=home).max_pixels
    assert s.debounce_s == 2.5
    assert s.folders == (Path("/x"),)
    assert any("max_pixels" in n for n in s.notices) and any("wat" in n for n in s.notices)


def test_tagging_knobs_are_read_checked_and_used(tmp_path):
    from rrg_local.concepts.tagging import tag_config

    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text("tag_background_quantile = 1.5\ntag_top_k = 5\n")
    s = load_settings({"RRG_HOME": str(home)})
    assert s.tag_background_quantile == 0.95 and any("must be below 1" in n for n in s.notices)
    assert tag_config(s).top_k == 5 and tag_config(s).background_quantile == 0.95
    (home / "config.toml").write_text("tag_background_quantile = 0\n")
    assert tag_config(load_settings({"RRG_HOME": str(home)})).background_quantile == 0.0
    (home / "config.toml").write_text('tag_stage2 = "vote"\n')
    s = load_settings({"RRG_HOME": str(home)})
    assert tag_config(s).stage2 == "identify" and any("must be one of identify, recognize" in n for n in s.notices)
    (home / "config.toml").write_text('tag_stage2 = "recognize"\n')
    assert tag_config(load_settings({"RRG_HOME": str(home)})).stage2 == "recognize"
    (home / "config.toml").write_text("tag_sure_margin = 0.05\n")
    assert tag_config(load_settings({"RRG_HOME": str(home)})).sure_margin == 0.05
    assert tag_config(load_settings({"RRG_HOME": str(tmp_path / "fresh")})).sure_margin == 0.0  # off by default
    (home / "config.toml").write_text('tag_stage2 = "likelihood"\n')
    assert tag_config(load_settings({"RRG_HOME": str(home)})).stage2 == "likelihood"
    (home / "config.toml").write_text("tag_stage2_budget = 1\n")
    s = load_settings({"RRG_HOME": str(home)})
    assert tag_config(s).stage2_budget == 0.3 and any("tag_stage2_budget: must be below 1" in n for n in s.notices)
    (home / "config.toml").write_text("tag_stage2_budget = 0.5\n")
    assert tag_config(load_settings({"RRG_HOME": str(home)})).stage2_budget == 0.5
