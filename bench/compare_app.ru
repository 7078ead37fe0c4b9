# frozen_string_literal: true

# The app bench/compare.rb serves: hello world, a 64 KiB body, and /upload (reads the body).
BODY_64K = ("x" * 65_536).freeze
HELLO = [200, { "Content-Type" => "text/plain", "Content-Length" => "12" }.freeze, ["Hello World!"].freeze].freeze

run(lambda do |env|
  case env["PATH_INFO"]
  when "/64k" then [200, { "Content-Type" => "text/plain" }, [BODY_64K]]
  when "/upload"
    input = env["rack.input"]
    size = 0
    buf = +""
    size += buf.bytesize while input.read(65_536, buf)
    [200, { "Content-Type" => "text/plain" }, [size.to_s]]
  else HELLO
  end
end)
