//! Evaluation of generative models.

pub mod gan_eval;

pub use gan_eval::{
    classifier_outputs, frechet_distance, inception_score, score_generator, scoring_lenet,
    GanScores, GaussianStats,
};
