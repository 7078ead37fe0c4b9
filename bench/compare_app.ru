# frozen_string_literal: true

# The app bench/compare.rb serves: hello world, and a 64 KiB body.
BODY_64K = ("x" * 65_536).freeze
HELLO = [200, { "Content-Type" => "text/plain", "Content-Length" => "12" }.freeze, ["Hello World!"].freeze].freeze

run(lambda do |env|
  if env["PATH_INFO"] == "/64k"
    [200, { "Content-Type" => "text/plain" }, [BODY_64K]]
  else
    HELLO
  end
end)
