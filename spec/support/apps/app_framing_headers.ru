# frozen_string_literal: true

require "rack"
require "rack/chunked"

# Responses whose app headers try to frame the body themselves. The whole app sits behind
# rack 2.2's Rack::Chunked, which chunk-encodes (and sets Transfer-Encoding on) HTTP/1.1
# responses that have neither Content-Length nor Transfer-Encoding.
#   /te-chunked     - Transfer-Encoding: chunked with an Array body ["hello"] (not encoded)
#   /each-cl-abc    - `each` body "hello world" with Content-Length: "abc"
#   /each-cl-multi  - `each` body "hello world" with Content-Length: "5\n6"
#   /each-cl-short  - `each` body "short" with Content-Length: 100
#   /rack-chunked   - `each` body "Hello, chunked world!" without Content-Length (so
#                     Rack::Chunked encodes it)
#   /workers        - Iodine::Base.workers_alive
#   anything else   - "ok"
use Rack::Chunked

# A streamed (`each`) body.
class EachBody
  def initialize(*parts)
    @parts = parts
  end

  def each(&block)
    @parts.each(&block)
  end
end

app = lambda do |env|
  case env["PATH_INFO"]
  when "/te-chunked"
    [200, { "Transfer-Encoding" => "chunked", "Content-Type" => "text/plain" }, ["hello"]]
  when "/each-cl-abc"
    [200, { "Content-Length" => "abc", "Content-Type" => "text/plain" }, EachBody.new("hello ", "world")]
  when "/each-cl-multi"
    [200, { "Content-Length" => "5\n6", "Content-Type" => "text/plain" }, EachBody.new("hello ", "world")]
  when "/each-cl-short"
    [200, { "Content-Length" => "100", "Content-Type" => "text/plain" }, EachBody.new("short")]
  when "/rack-chunked"
    [200, { "Content-Type" => "text/plain" }, EachBody.new("Hello, ", "chunked ", "world!")]
  when "/workers"
    alive = Iodine::Base.respond_to?(:workers_alive) ? Iodine::Base.workers_alive.to_s : "unknown"
    [200, { "content-type" => "text/plain" }, [alive]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
