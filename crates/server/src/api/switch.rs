//! Filters switched off: the network evaluated on a split, its maps on one image, and one
//! filter's maps over the panel. Every number is the physically smaller network's
//! ([`lab::inside::switched`]), so it equals `shapelab eval --remove`.

use std::sync::Arc;

use axum::extract::State as Extract;
use axum::Json;
use lab::inside::switched::Switched;
use serde::{Deserialize, Serialize};

use super::{bad, blocking, Failure};
use crate::view::BINS;
use crate::State;

/// A run with some filters switched off, evaluated on a split.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    pub run: String,
    /// `[layer, filter]`, both 1-based.
    #[serde(default)]
    pub off: Vec<(usize, usize)>,
    pub split: shapes::Split,
}

/// The filters kept when `off` are switched off, or a 400 naming the bad one.
fn keep(run: &lab::models::run::Run, off: &[(usize, usize)]) -> Result<Vec<Vec<bool>>, Failure> {
    run.model
        .arch
        .keep_without(off)
        .map_err(|e| bad(e.to_string()))
}

pub async fn eval(
    Extract(state): Extract<Arc<State>>,
    Json(req): Json<EvalRequest>,
) -> Result<Json<Switched>, Failure> {
    blocking(move || {
        let run = state.run(&req.run)?;
        let d = state.dataset(&req.run)?;
        let keep = keep(&run, &req.off)?;
        let s = lab::inside::switched::evaluate(
            &run.model,
            &keep,
            &d,
            req.split,
            run.meta.train.scaling,
            BINS,
        )?;
        Ok(Json(s))
    })
    .await
}

/// The image a network reads: one of the run's panel images, or pixels drawn or uploaded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Image {
    /// The panel's image at this index.
    Panel(usize),
    /// `[H x W]` pixels, 0 (background) to 255.
    Pixels(Vec<u8>),
}

/// A run with filters off, on one image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapsRequest {
    pub run: String,
    #[serde(default)]
    pub off: Vec<(usize, usize)>,
    pub image: Image,
}

/// Its maps and prediction.
#[derive(Debug, Serialize, Deserialize)]
pub struct MapsResponse {
    /// The pixels read, `[H x W]`.
    pub pixels: Vec<u8>,
    /// Per conv layer: its maps' side `(h, w)` and `[C][h x w]` maps after the activation
    /// (zero for a filter switched off).
    pub layers: Vec<LayerMaps>,
    /// Per class, the softmax probability.
    pub probabilities: Vec<f32>,
    pub predicted: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LayerMaps {
    pub height: usize,
    pub width: usize,
    pub maps: Vec<Vec<f32>>,
}

pub async fn maps(
    Extract(state): Extract<Arc<State>>,
    Json(req): Json<MapsRequest>,
) -> Result<Json<MapsResponse>, Failure> {
    blocking(move || {
        let run = state.run(&req.run)?;
        let keep = keep(&run, &req.off)?;
        let arch = &run.model.arch;
        let px = arch.height * arch.width;
        let pixels = match req.image {
            Image::Pixels(p) if p.len() == px => p,
            Image::Pixels(p) => {
                return Err(bad(format!(
                    "the image has {} pixels; the network reads {}x{} = {px}",
                    p.len(),
                    arch.width,
                    arch.height
                )))
            }
            Image::Panel(i) => {
                let view = super::run::view(&state, &req.run)?;
                view.panel.images.get(i).cloned().ok_or_else(|| {
                    bad(format!(
                        "panel image {i}: the panel has {} images, numbered from 0",
                        view.panel.images.len()
                    ))
                })?
            }
        };
        let m = lab::inside::switched::maps(&run.model, &keep, &pixels, run.meta.train.scaling)?;
        let layers = arch
            .layers()
            .iter()
            .zip(m.post)
            .map(|(s, post)| LayerMaps {
                height: s.h,
                width: s.w,
                maps: post.chunks(s.hw()).map(<[f32]>::to_vec).collect(),
            })
            .collect();
        Ok(Json(MapsResponse {
            pixels,
            layers,
            predicted: tinycnn::train::prediction(&m.probabilities),
            probabilities: m.probabilities,
        }))
    })
    .await
}

/// One filter's maps over the panel, with filters off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRequest {
    pub run: String,
    #[serde(default)]
    pub off: Vec<(usize, usize)>,
    /// 1-based.
    pub layer: usize,
    pub filter: usize,
}

/// `[n][h x w]` maps after the activation, one per panel image, and their largest value
/// (the filter's one scale over the panel, as the activation sheets draw it).
#[derive(Debug, Serialize, Deserialize)]
pub struct FilterMaps {
    pub height: usize,
    pub width: usize,
    pub maps: Vec<Vec<f32>>,
    pub max: f32,
}

pub async fn filter(
    Extract(state): Extract<Arc<State>>,
    Json(req): Json<FilterRequest>,
) -> Result<Json<FilterMaps>, Failure> {
    blocking(move || {
        let run = state.run(&req.run)?;
        let keep = keep(&run, &req.off)?;
        let layers = run.model.arch.layers();
        let s = layers
            .get(req.layer.wrapping_sub(1))
            .filter(|s| (1..=s.cout).contains(&req.filter))
            .ok_or_else(|| {
                bad(format!(
                    "L{} F{}: the network's layers have {:?} filters, numbered from 1",
                    req.layer, req.filter, run.model.arch.filters
                ))
            })?;
        let view = super::run::view(&state, &req.run)?;
        let images: Vec<u8> = view.panel.images.concat();
        let m = lab::inside::switched::maps(&run.model, &keep, &images, run.meta.train.scaling)?;
        let hw = s.hw();
        let maps: Vec<Vec<f32>> = m.post[req.layer - 1]
            .chunks(s.cout * hw)
            .map(|img| img[(req.filter - 1) * hw..][..hw].to_vec())
            .collect();
        let max = maps.iter().flatten().fold(0.0f32, |a, &b| a.max(b));
        Ok(Json(FilterMaps {
            height: s.h,
            width: s.w,
            maps,
            max,
        }))
    })
    .await
}
