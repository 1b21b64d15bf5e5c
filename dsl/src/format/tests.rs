use super::{FormatError, format_flow};

fn fmt(src: &str) -> String {
    let out = format_flow(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    assert_eq!(
        format_flow(&out).as_deref(),
        Ok(out.as_str()),
        "not idempotent"
    );
    out
}

#[test]
fn one_clause_a_line_four_space_indents() {
    let src = "flow f { entry a }\nstep a { play x goto b }\nstep b {\n  hangup\n}\n";
    assert_eq!(
        fmt(src),
        "flow f {\n    entry a\n}\n\nstep a {\n    play x\n    goto b\n}\n\nstep b {\n    hangup\n}\n"
    );
}

#[test]
fn clause_words_align_as_in_the_examples() {
    let src = "menu m {\nprompt m\ntimeout 5s\nattempts 3 -> agent\nno_input play n\nkey 1 -> bill\nkey * -> repeat\n}\n";
    assert_eq!(
        fmt(src),
        "menu m {\n    prompt   m\n    timeout  5s\n    attempts 3 -> agent\n    no_input play n\n    key 1 -> bill\n    key * -> repeat\n}\n"
    );
    let src = "input i {\nprompt p\ninter_digit 4s\nmask\nno_input play n\ninto x\nnext y\n}\n";
    assert_eq!(
        fmt(src),
        "input i {\n    prompt      p\n    inter_digit 4s\n    mask\n    no_input play n\n    into     x\n    next     y\n}\n"
    );
    let src = "transfer t {\nqueue general\npriority 10 if vip\nno_agents -> x\nafter -> y\n}\n";
    assert_eq!(
        fmt(src),
        "transfer t {\n    queue    general\n    priority 10 if vip\n    no_agents -> x\n    after    -> y\n}\n"
    );
    let src = "survey s {\nquestion overall survey_overall scale 1..5\nquestion solved survey_solved choices 1 = \"yes\", 2=\"no\"\nnext n\n}\n";
    assert_eq!(
        fmt(src),
        "survey s {\n    question overall survey_overall scale 1..5\n    question solved  survey_solved  choices 1 = \"yes\", 2 = \"no\"\n    next     n\n}\n"
    );
}

#[test]
fn a_step_aligns_consecutive_sets_only() {
    let src = "step s {\nplay a\nset x = 1\nset long_name=2\nif x>1->s\ngoto s\n}\n";
    assert_eq!(
        fmt(src),
        "step s {\n    play a\n    set x         = 1\n    set long_name = 2\n    if x > 1 -> s\n    goto s\n}\n"
    );
}

#[test]
fn comments_are_kept_where_they_were() {
    let src = "# head\n\n\n\n# about a\nstep a { # opens\n\n\n  play x   # 中文\n  // own line\n  goto a\n\n} # end\n# tail\n";
    assert_eq!(
        fmt(src),
        "# head\n\n\n# about a\nstep a { # opens\n    play x # 中文\n    // own line\n    goto a\n} # end\n# tail\n"
    );
}

#[test]
fn trailing_comments_keep_their_column_or_move_right() {
    let src = "step a {\n    play x                # far\n  goto a # near\n}\n";
    assert_eq!(
        fmt(src),
        "step a {\n    play x                # far\n    goto a  # near\n}\n"
    );
}

#[test]
fn a_comment_inside_a_clause_goes_above_it() {
    let src = "step a {\n    play x, # first\n         y\n    goto a\n}\n";
    assert_eq!(
        fmt(src),
        "step a {\n    # first\n    play x, y\n    goto a\n}\n"
    );
}

#[test]
fn keys_are_not_comments() {
    let src =
        "menu m {\n  key # -> back # a comment\n}\ninput i { terminator # \n into x next y }\n";
    assert_eq!(
        fmt(src),
        "menu m {\n    key # -> back  # a comment\n}\n\ninput i {\n    terminator #\n    into       x\n    next       y\n}\n"
    );
}

#[test]
fn imports_may_stand_together() {
    let src = "flow f {\n entry a\n}\nimport a\nimport b # why\nstep a { goto a }";
    assert_eq!(
        fmt(src),
        "flow f {\n    entry a\n}\n\nimport a\nimport b # why\n\nstep a {\n    goto a\n}\n"
    );
}

#[test]
fn syntax_errors_are_not_formatted() {
    let err = format_flow("step a {\n    goto\n}\n").unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::Syntax {
                count: 1,
                line: 2,
                ..
            }
        ),
        "{err:?}"
    );
}
