//! The checkpoint families that share BERT's architecture, as transformers names them: BERT
//! (`model_type` "bert"), RoBERTa ("roberta") and XLM-RoBERTa ("xlm-roberta"). One encoder
//! computes all three; a family differs only in where its positions start, in the names of its
//! tensors and in its classification head. Everything that depends on the family asks this type:
//! the loader, the Hugging Face export and the ONNX graph.
//!
//! RoBERTa (`modeling_roberta.py`): position ids start at `pad_token_id + 1` and padding tokens
//! take `pad_token_id` (`create_position_ids_from_input_ids`); the encoder is nested under
//! `roberta.`; `RobertaForSequenceClassification` has no pooler but a head over the first token,
//! `classifier.dense` → tanh → `classifier.out_proj`, with a dropout before each. That head is
//! BERT's pooler and classifier under other names (plus the first dropout), so kdrun keeps one
//! module tree and maps the names.

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    Roberta,
    XlmRoberta,
}

impl Family {
    /// The `model_type` values kdrun reads as a BERT-architecture encoder.
    pub const MODEL_TYPES: [&'static str; 3] = ["bert", "roberta", "xlm-roberta"];

    pub fn of(model_type: &str) -> Result<Self> {
        Ok(match model_type {
            "bert" | "" => Self::Bert,
            "roberta" => Self::Roberta,
            "xlm-roberta" => Self::XlmRoberta,
            other => bail!("model_type {other:?} is not a BERT-architecture family"),
        })
    }

    pub fn model_type(self) -> &'static str {
        Self::MODEL_TYPES[self as usize]
    }

    /// RoBERTa's layout (positions offset, `classifier.dense` + `classifier.out_proj`).
    pub fn is_roberta(self) -> bool {
        self != Self::Bert
    }

    /// The prefix of the encoder's tensors in task models.
    pub fn encoder_prefix(self) -> &'static str {
        if self.is_roberta() {
            "roberta."
        } else {
            "bert."
        }
    }

    /// The transformers class of the sequence classifier.
    pub fn classifier_architecture(self) -> &'static str {
        match self {
            Self::Bert => "BertForSequenceClassification",
            Self::Roberta => "RobertaForSequenceClassification",
            Self::XlmRoberta => "XLMRobertaForSequenceClassification",
        }
    }

    /// Where a sequence classifier keeps the dense layer over the first token (kdrun's
    /// `pooler.dense`), and its output layer (kdrun's `classifier`).
    pub fn head_names(self) -> (&'static str, &'static str) {
        if self.is_roberta() {
            ("classifier.dense.", "classifier.out_proj.")
        } else {
            ("bert.pooler.dense.", "classifier.")
        }
    }

    /// The first position id of a sequence (the row of the position table its first token reads);
    /// padding tokens read row `pad_token_id` in RoBERTa.
    pub fn position_offset(self, pad_token_id: usize) -> usize {
        if self.is_roberta() {
            pad_token_id + 1
        } else {
            0
        }
    }

    /// Whether further pre-training (the masked-LM head) is read and written for this family.
    pub fn has_mlm_head(self) -> bool {
        !self.is_roberta()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_types_round_trip() {
        for t in Family::MODEL_TYPES {
            assert_eq!(Family::of(t).unwrap().model_type(), t);
        }
        assert!(Family::of("gpt2").is_err());
        assert_eq!(Family::of("xlm-roberta").unwrap().position_offset(1), 2);
        assert_eq!(Family::Bert.position_offset(0), 0);
    }
}
