# frozen_string_literal: true

require "spec_helper"
require "open3"

# bin/check-jumps (run by bin/test): every binding line that could turn a Ruby call's Err
# (a jump among them) into a value must say why it can't.
RSpec.describe "bin/check-jumps" do
  def check(source)
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "lib.rs"), source)
      out, err, status = Open3.capture3(File.join(ROOT, "bin", "check-jumps"), dir)
      [out + err, status.exitstatus]
    end
  end

  it "passes the binding as it is" do
    out, status = Open3.capture2e(File.join(ROOT, "bin", "check-jumps"))
    expect(status.exitstatus).to eq(0), out
  end

  it "fails on each pattern that can swallow an Err, naming the line" do
    lines = [
      'let n = i64::try_convert(v).ok();',
      'let a = value.funcall("arity", ()).unwrap_or(-1);',
      'let n = x.map_err(|_| oops())?;',
      'if let Ok(v) = value.funcall::<_, _, Value>("call", ()) {}',
      'match r { Ok(v) => v, Err(_) => 0 }',
      'let _ = body.funcall::<_, _, Value>("close", ());',
      'let text = v.inspect();',
      'if r.is_ok() {}'
    ]
    lines.each do |line|
      out, status = check("fn f() {\n    #{line}\n}\n")
      expect(status).to eq(1), "not caught: #{line}"
      expect(out).to include("lib.rs:2:")
    end
  end

  it "accepts a line whose comment (on it or right above it) says why no jump comes through" do
    out, status = check(<<~RUST)
      fn f() {
          let n = u16::try_from(x).ok(); // jump-safe: Rust's conversion, no Ruby call
          // A RefCell borrow.
          // jump-safe: no Ruby call
          if let Ok(v) = cell.try_borrow() {}
      }
    RUST
    expect(status).to eq(0), out
  end

  it "does not take a reason from a comment further away" do
    out, status = check(<<~RUST)
      fn f() {
          // jump-safe: this explains the next line only
          let a = 1;
          let n = value.funcall::<_, _, i64>("to_int", ()).ok();
      }
    RUST
    expect(status).to eq(1)
    expect(out).to include("lib.rs:4:")
  end
end
