//! `median_and_p95(x)`: the median and the 95th percentile of a group in
//! one aggregate, for the time-to-sign-in table `q` (see [`super::stages`]).
//!
//! Two `percentile_cont` calls each keep every value of every group, once
//! per grouping set: the sign-in durations of a month were held six times
//! and pushed, copied and merged twice as often as needed. One aggregate
//! that keeps them once and answers both quantiles is what this is. Its
//! values are those of DataFusion's `percentile_cont` (linear interpolation
//! between the closest ranks, the weight cut to millionths), so `q` is the
//! same whichever a statement uses; statements for other engines
//! (`bench kpis --emit-sql`) keep `percentile_cont`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The aggregate's name in SQL.
pub(super) const NAME: &str = "median_and_p95";

/// The quantiles it gives, and the names of its struct's fields.
const QUANTILES: [(&str, f64); 2] = [("p50", 0.5), ("p95", 0.95)];

/// Registers [`NAME`] in `ctx`.
pub(super) fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::new_from_impl(MedianAndP95 {
        signature: Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
    }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct MedianAndP95 {
    signature: Signature,
}

fn fields() -> Fields {
    QUANTILES
        .iter()
        .map(|(name, _)| Field::new(*name, DataType::Float64, true))
        .collect()
}

/// The element of the state's lists: one group's values.
fn value_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float64, true))
}

/// The state of `groups`: a list of each one's values.
fn lists(groups: &[Vec<f64>]) -> DfResult<ArrayRef> {
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
    let flat: Float64Array = groups.concat().into();
    Ok(Arc::new(ListArray::try_new(
        value_field(),
        offsets,
        Arc::new(flat),
        None,
    )?))
}

/// The quantiles of `groups` (each reordered, none emptied), one struct a
/// group.
fn quantiles(groups: &mut [Vec<f64>]) -> DfResult<ArrayRef> {
    let columns = QUANTILES
        .iter()
        .map(|(_, p)| {
            let column: Float64Array = groups.iter_mut().map(|v| quantile(v, *p)).collect();
            Arc::new(column) as ArrayRef
        })
        .collect();
    Ok(Arc::new(StructArray::try_new(fields(), columns, None)?))
}

impl AggregateUDFImpl for MedianAndP95 {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            DataType::List(value_field()),
            true,
        ))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup::default()))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::default()))
    }
}

/// The value of quantile `p` of `values` (reordered), as `percentile_cont`
/// gives it; `None` for no values.
fn quantile(values: &mut [f64], p: f64) -> Option<f64> {
    let n = values.len();
    let at = |values: &mut [f64], i: usize| *values.select_nth_unstable_by(i, f64::total_cmp).1;
    match n {
        0 => None,
        1 => Some(values[0]),
        _ => {
            let index = p * (n - 1) as f64;
            let (below, above) = (index.floor(), index.ceil());
            let low = at(values, below as usize);
            if below == above {
                return Some(low);
            }
            let high = at(values, above as usize);
            // Cut to millionths, as `percentile_cont` does: the same
            // durations give the same quantile through either.
            let weight = ((index - below) * 1e6).floor() / 1e6;
            Some(low + (high - low) * weight)
        }
    }
}

/// Every group's values, kept until the quantiles are asked for.
#[derive(Debug, Default)]
struct Groups {
    values: Vec<Vec<f64>>,
}

impl Groups {
    fn grow(&mut self, groups: usize) {
        if self.values.len() < groups {
            self.values.resize_with(groups, Vec::new);
        }
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        let [x] = values else {
            return Err(internal("one argument"));
        };
        let x = x.as_primitive::<Float64Type>();
        self.grow(total_num_groups);
        for (row, &group) in group_indices.iter().enumerate() {
            let counted =
                x.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if counted {
                self.values[group].push(x.value(row));
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        let [lists] = values else {
            return Err(internal("one state column"));
        };
        let lists = lists.as_list::<i32>();
        self.grow(total_num_groups);
        for (row, &group) in group_indices.iter().enumerate() {
            if lists.is_valid(row) {
                let list = lists.value(row);
                let list = list.as_primitive::<Float64Type>();
                // States hold no NULLs: only counted values are kept.
                self.values[group].extend_from_slice(list.values());
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![lists(&emit_to.take_needed(&mut self.values))?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        quantiles(&mut emit_to.take_needed(&mut self.values))
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        // Each row a group of its own.
        let rows = values.first().map_or(0, |v| v.len());
        let mut each = Self::default();
        each.update_batch(values, &(0..rows).collect::<Vec<_>>(), opt_filter, rows)?;
        each.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.values.capacity() * size_of::<Vec<f64>>()
            + self
                .values
                .iter()
                .map(|v| v.capacity() * size_of::<f64>())
                .sum::<usize>()
    }
}

/// [`Groups`] of one group, for an aggregation without `GROUP BY`. Its
/// state and value are read without emptying it: a window's frame asks for
/// them again as it moves.
#[derive(Debug, Default)]
struct OneGroup(Groups);

impl OneGroup {
    /// The one group's values.
    fn group(&mut self) -> &mut [Vec<f64>] {
        self.0.grow(1);
        &mut self.0.values
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = states.first().map_or(0, |v| v.len());
        self.0.merge_batch(states, &vec![0; rows], 1)
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::try_from_array(&lists(self.group())?, 0)?])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        ScalarValue::try_from_array(&quantiles(self.group())?, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.0.size()
    }
}

fn internal(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{NAME}() takes {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_the_closest_ranks() {
        let q = |values: &[f64], p: f64| quantile(&mut values.to_vec(), p);
        assert_eq!(q(&[], 0.5), None);
        assert_eq!(q(&[7.0], 0.95), Some(7.0));
        assert_eq!(q(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        assert_eq!(q(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        // index 0.95 × 20 = 19: the 20th of 21 values, no interpolation.
        let ranks: Vec<f64> = (0..=20).rev().map(f64::from).collect();
        assert_eq!(q(&ranks, 0.95), Some(19.0));
        // index 0.95 × 3 = 2.85: 30 + (40 − 30) × 0.85, the weight cut to
        // millionths after binary rounding (0.849999), as DataFusion does.
        let four = [40.0, 10.0, 30.0, 20.0];
        assert_eq!(q(&four, 0.95), Some(38.49999));
    }

    #[tokio::test]
    async fn the_aggregate_gives_what_percentile_cont_gives() {
        // Durations with ties, gaps and NULLs in three groups, one of them
        // all NULL, through grouping sets (partial and final aggregation).
        let ctx = SessionContext::new();
        register(&ctx);
        let rows: Vec<String> = (0..500)
            .map(|i| {
                let d = if i % 17 == 0 {
                    "NULL".to_owned()
                } else {
                    ((i * 7919) % 1013 + i / 50).to_string()
                };
                format!("('{}', {d})", ["a", "b", "c"][i % 3])
            })
            .chain(["('d', NULL)".to_owned()])
            .collect();
        let t = format!("(VALUES {}) AS t(k, d)", rows.join(", "));
        let sql = |select: &str| {
            format!(
                "SELECT k, {select} FROM {t} GROUP BY GROUPING SETS ((k), ()) ORDER BY k NULLS LAST"
            )
        };
        let ours = sql(&format!("{NAME}(d)['p50'] AS p50, {NAME}(d)['p95'] AS p95"));
        let theirs = sql("percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95");
        let run = |sql: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx
                    .sql(&sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("format")
                    .to_string()
            }
        };
        let (ours, theirs) = (run(ours).await, run(theirs).await);
        assert_eq!(ours, theirs);
        let all_null = ours.lines().find(|l| l.starts_with("| d |"));
        assert!(
            all_null.is_some_and(|l| !l.chars().any(|c| c.is_ascii_digit())),
            "{ours}"
        );
        // Without `GROUP BY`: the one-group form.
        let whole = |select: &str| format!("SELECT {select} FROM {t}");
        let ours = whole(&format!("{NAME}(d)['p50'] AS p50, {NAME}(d)['p95'] AS p95"));
        let theirs = whole(
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95",
        );
        assert_eq!(run(ours).await, run(theirs).await);
    }
}
