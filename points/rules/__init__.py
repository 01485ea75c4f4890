"""The earn engine: from a purchase, its member and the rules in force to priced points with
who pays each line (`model` the data, `cel` conditions, `engine` the pricing, `funding` the
largest-remainder split)."""
