//! The built-in spoken-value fragments (`_5`, `_yuan`, `_jan`, ...) of zh-CN and en-US: 8 kHz
//! μ-law WAV files under `prompts/_builtin/<language>/`, rendered from the texts of
//! [`ivr_engine::say::builtin_fragments`] by `ivr prompts generate` and embedded in the binary, so
//! that a deployment can `say` values with no audio of its own. `_beep` is a tone made here.
//!
//! They are decoded once per process and shared by every prompt store (a reload never decodes
//! them again).

use super::SAMPLE_RATE;
use super::store::{Audio, Prompt, PromptSource};
use indexmap::IndexMap;
use ivr_engine::say::{self, Language};
use std::sync::{Arc, OnceLock};

/// The frequency of the `_beep` tone (Hz).
pub const BEEP_HZ: f32 = 1000.0;
/// The length of the `_beep` tone (ms).
pub const BEEP_MS: u32 = 400;

macro_rules! embedded {
    ($lang:literal: $($id:literal)*) => {
        &[$(
            ($id, include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../../prompts/_builtin/", $lang, "/", $id, ".wav"
            )) as &[u8]),
        )*]
    };
}

/// The embedded audio files of zh-CN, by fragment id.
static ZH_CN_FILES: &[(&str, &[u8])] = embedded!("zh-CN":
    "_0" "_1" "_2" "_3" "_4" "_5" "_6" "_7" "_8" "_9" "_yao" "_liang" "_10" "_100" "_1000"
    "_10000" "_100000000" "_point" "_minus" "_yuan" "_jiao" "_fen" "_year" "_month" "_day"
    "_hour" "_minute" "_zheng" "_star" "_pound" "_queue_position" "_queue_position_end"
);

/// The embedded audio files of en-US, by fragment id.
static EN_US_FILES: &[(&str, &[u8])] = embedded!("en-US":
    "_0" "_1" "_2" "_3" "_4" "_5" "_6" "_7" "_8" "_9" "_10" "_11" "_12" "_13" "_14" "_15" "_16"
    "_17" "_18" "_19" "_20" "_30" "_40" "_50" "_60" "_70" "_80" "_90" "_100" "_1000" "_million"
    "_billion" "_trillion" "_point" "_minus" "_oh" "_yuan" "_cent" "_cents" "_jan" "_feb"
    "_mar" "_apr" "_may" "_jun" "_jul" "_aug" "_sep" "_oct" "_nov" "_dec" "_1st" "_2nd" "_3rd"
    "_4th" "_5th" "_6th" "_7th" "_8th" "_9th" "_10th" "_11th" "_12th" "_13th" "_14th" "_15th"
    "_16th" "_17th" "_18th" "_19th" "_20th" "_21st" "_22nd" "_23rd" "_24th" "_25th" "_26th"
    "_27th" "_28th" "_29th" "_30th" "_31st" "_am" "_pm" "_noon" "_midnight" "_star" "_pound"
    "_queue_position" "_queue_position_end"
);

/// The embedded audio file of a fragment, if there is one (`_beep` has none: it is a tone).
pub fn embedded_file(lang: Language, id: &str) -> Option<&'static [u8]> {
    let files = match lang {
        Language::ZhCn => ZH_CN_FILES,
        Language::EnUs => EN_US_FILES,
    };
    files.iter().find(|(f, _)| *f == id).map(|(_, b)| *b)
}

/// The ids with an embedded audio file, in order.
pub fn embedded_ids(lang: Language) -> impl Iterator<Item = &'static str> {
    let files = match lang {
        Language::ZhCn => ZH_CN_FILES,
        Language::EnUs => EN_US_FILES,
    };
    files.iter().map(|(id, _)| *id)
}

/// The built-in fragments of a language as prompts, decoded on first use and shared from then
/// on. A fragment whose embedded file cannot be decoded (which the tests rule out) is left out.
pub fn builtin_prompts(lang: Language) -> &'static IndexMap<&'static str, Arc<Prompt>> {
    static ZH: OnceLock<IndexMap<&'static str, Arc<Prompt>>> = OnceLock::new();
    static EN: OnceLock<IndexMap<&'static str, Arc<Prompt>>> = OnceLock::new();
    let cell = match lang {
        Language::ZhCn => &ZH,
        Language::EnUs => &EN,
    };
    cell.get_or_init(|| {
        let mut prompts = IndexMap::new();
        for &(id, text) in say::builtin_fragments(lang) {
            let audio = if id == "_beep" {
                Some(Arc::new(beep()))
            } else {
                embedded_file(lang, id)
                    .and_then(|bytes| super::decode_to_audio(bytes, Some("wav")).ok())
                    .map(Arc::new)
            };
            if let Some(audio) = audio {
                prompts.insert(
                    id,
                    Arc::new(Prompt {
                        id: id.to_string(),
                        text: text.to_string(),
                        audio,
                        source: PromptSource::Builtin,
                    }),
                );
            }
        }
        prompts
    })
}

/// A built-in fragment as a prompt.
pub fn builtin_prompt(lang: Language, id: &str) -> Option<&'static Arc<Prompt>> {
    builtin_prompts(lang).get(id)
}

/// The `_beep` tone: 1 kHz for 400 ms at -6 dBFS, with 5 ms ramps so that it does not click.
pub fn beep() -> Audio {
    let n = (SAMPLE_RATE * BEEP_MS / 1000) as usize;
    let ramp = (SAMPLE_RATE / 200) as usize;
    let pcm: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f32 / SAMPLE_RATE as f32;
            let edge = i.min(n - 1 - i);
            let gain = if edge < ramp {
                edge as f32 / ramp as f32
            } else {
                1.0
            };
            let x = 0.5 * gain * (2.0 * std::f32::consts::PI * BEEP_HZ * t).sin();
            (x * 32767.0).round() as i16
        })
        .collect();
    Audio::from_pcm(&pcm)
}

/// The built-in fragment texts of a language as a prompt catalog (`prompts.toml`), without
/// `_beep`: what `ivr prompts generate` renders into `prompts/_builtin/<language>/`.
pub fn builtin_catalog_toml(lang: Language) -> String {
    let mut out = format!(
        "# Built-in spoken-value fragments, {}: generated from runtime/engine/src/say (do not edit;\n\
         # `IVR_BLESS=1 cargo test -p ivr-media builtin` rewrites it). `ivr prompts generate`\n\
         # renders each text to <id>.wav (8 kHz mu-law), which the ivr binary embeds.\n",
        lang.tag()
    );
    for &(id, text) in say::builtin_fragments(lang) {
        if id == "_beep" {
            continue;
        }
        let text = text.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{id:<21} = {{ text = \"{text}\" }}\n"));
    }
    out
}
