# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# Three divergences from nginx and the C gem, on real sockets:
# - `Accept-Encoding: gzip;q=0, *` (and `*, gzip;q=0`, `gzip;Q=0`) got the .gz twin; an
#   explicit q=0 refuses gzip whatever `*` says (RFC 9110 §12.5.3);
# - a range on an empty file (`bytes=0-`, `bytes=-5`) got 416; nginx answers 200;
# - X-Sendfile with a non-2xx status (a 503 maintenance page) was sent as 200.
RSpec.describe "static answers" do
  around do |example|
    Dir.mktmpdir("iodine-static") do |dir|
      @root = File.join(dir, "public")
      Dir.mkdir(@root)
      File.write(File.join(@root, "app.js"), "plain js")
      File.write(File.join(@root, "app.js.gz"), "gzipped!")
      File.write(File.join(@root, "empty.txt"), "")
      File.write(File.join(dir, "maintenance.html"), "<h1>back soon</h1>")
      app = File.join(dir, "app.ru")
      File.write(app, <<~RUBY)
        run(lambda do |env|
          case env["PATH_INFO"]
          when "/down" then [503, { "X-Sendfile" => #{File.join(dir, 'maintenance.html').inspect}, "Retry-After" => "30" }, []]
          when "/up" then [200, { "X-Sendfile" => #{File.join(dir, 'maintenance.html').inspect} }, []]
          else [404, {}, ["nothing"]]
          end
        end)
      RUBY
      @server = ServerProcess.new(["-t", "1", "-www", @root, app])
      example.run
    ensure
      @server&.stop
    end
  end

  def get(path, headers = {})
    http_get(@server.port, path, headers)
  end

  it "refuse the gzip twin to an explicit gzip;q=0, whatever * says" do
    ["gzip;q=0, *", "*, gzip;q=0", "gzip;Q=0", "gzip; q=0.000"].each do |accept|
      response = get("/app.js", "Accept-Encoding" => accept)
      expect([response["content-encoding"], response.body]).to eq([nil, "plain js"]), accept
    end
    response = get("/app.js", "Accept-Encoding" => "br, *")
    expect([response["content-encoding"], response.body]).to eq(["gzip", "gzipped!"])
  end

  it "send an empty file whole (200) whatever range is asked" do
    ["bytes=0-", "bytes=-5", "bytes=0-0"].each do |range|
      response = get("/empty.txt", "Range" => range)
      expect([response.code, response.body, response["content-range"]]).to eq(["200", "", nil]), range
    end
  end

  it "keep X-Sendfile's non-2xx status and send the whole page, its other headers kept" do
    response = get("/down", "Range" => "bytes=0-3", "If-None-Match" => "*")
    expect(response.code).to eq("503")
    expect(response.body).to eq("<h1>back soon</h1>")
    expect(response["retry-after"]).to eq("30")
    ranged = get("/up", "Range" => "bytes=0-3")
    expect([ranged.code, ranged.body]).to eq(["206", "<h1>"])
  end
end
