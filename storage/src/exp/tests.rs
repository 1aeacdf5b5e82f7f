//! Unit and property tests of the expression compiler and evaluator.
