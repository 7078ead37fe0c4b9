# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "open3"

# Static files from a public folder (-www), with curl and raw sockets. The first steps of the
# static-files issue: serving, validators, ranges, gzip twins, and the folder's walls.
RSpec.describe "static files (-www)" do
  around do |example|
    Dir.mktmpdir do |dir|
      @root = File.join(dir, "public")
      Dir.mkdir(@root)
      Dir.mkdir(File.join(@root, "docs"))
      File.write(File.join(@root, "hello.txt"), "hello world")
      File.write(File.join(@root, "docs", "index.html"), "<p>docs</p>")
      File.write(File.join(@root, "app.js"), "plain();")
      File.write(File.join(@root, "app.js.gz"), "GZIPPED")
      File.write(File.join(dir, "canary.txt"), "CANARY")
      File.write(File.join(@root, "400.html"), "<h1>bad request page</h1>")
      File.write(File.join(@root, "500.html"), "<h1>we broke it</h1>")
      File.symlink(File.join(dir, "canary.txt"), File.join(@root, "leak"))
      @secret = File.join(dir, "served-by-header.txt")
      File.write(@secret, "0123456789")
      app = File.join(dir, "app.ru")
      File.write(app, <<~RUBY)
        run(lambda do |env|
          case env["PATH_INFO"]
          when "/send" then [200, { "X-Sendfile" => #{@secret.inspect}, "x-custom" => "kept", "content-type" => "application/x-thing" }, ["ignored"]]
          when "/send-lower" then [200, { "x-sendfile" => #{@secret.inspect} }, []]
          when "/send-missing" then [200, { "x-sendfile" => "/no/such/file" }, []]
          when "/type" then [200, {}, [env["sendfile.type"].to_s]]
          when "/boom" then raise "boom"
          when "/broken" then [200, { "bad header" => "x" }, 42]
          when "/own-500" then [500, { "content-type" => "text/plain" }, ["the app's own 500"]]
          else [200, { "content-type" => "text/plain" }, ["app:" + env["PATH_INFO"]]]
          end
        end)
      RUBY
      @server = ServerProcess.new(["-t", "1", "-www", @root, app])
      example.run
    ensure
      @server&.stop
    end
  end

  def curl(*args)
    out, status = Open3.capture2("curl", "-s", "--max-time", "10", *args)
    expect(status.success?).to be(true)
    out
  end

  def url(path)
    "http://127.0.0.1:#{@server.port}#{path}"
  end

  it "serves files before the app, with validators, and index.html for folders" do
    head = curl("-i", url("/hello.txt"))
    expect(head).to start_with("HTTP/1.1 200")
    expect(head).to match(/^content-type: text\/plain; charset=utf-8\r$/)
    expect(head).to match(/^cache-control: max-age=3600\r$/)
    expect(head).to end_with("hello world")
    etag = head[/^etag: (".+")\r$/, 1]
    expect(etag).not_to be_nil
    expect(curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: #{etag}", url("/hello.txt"))).to eq("304")
    modified = head[/^last-modified: (.+)\r$/, 1]
    expect(curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "If-Modified-Since: #{modified}", url("/hello.txt"))).to eq("304")
    expect(curl(url("/docs/"))).to eq("<p>docs</p>")
    expect(curl(url("/docs"))).to eq("app:/docs") # no redirect: the app's
    expect(curl(url("/nothing"))).to eq("app:/nothing")
    expect(curl("-I", url("/hello.txt"))).to match(/^content-length: 11\r$/)
  end

  it "answers ranges, suffix ranges included, and 416 past the end" do
    expect(curl("-H", "Range: bytes=0-4", url("/hello.txt"))).to eq("hello")
    expect(curl("-H", "Range: bytes=-5", url("/hello.txt"))).to eq("world")
    expect(curl("-i", "-H", "Range: bytes=6-", url("/hello.txt"))).to match(/^content-range: bytes 6-10\/11\r$/)
    expect(curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Range: bytes=99-", url("/hello.txt"))).to eq("416")
  end

  it "prefers a .gz twin when gzip is accepted, and says it varies" do
    zipped = curl("-i", "-H", "Accept-Encoding: gzip", url("/app.js"))
    expect(zipped).to match(/^content-encoding: gzip\r$/)
    expect(zipped).to match(/^vary: Accept-Encoding\r$/)
    expect(zipped).to end_with("GZIPPED")
    expect(curl(url("/app.js"))).to eq("plain();")
  end

  it "never serves what is outside the folder, whatever the encoding" do
    tricks = ["/leak", "/../canary.txt", "/%2e%2e/canary.txt", "/..%2fcanary.txt", "/%2e%2e%2fcanary.txt",
              "/docs/..%5c..%5ccanary.txt", "/hello.txt%00", "//canary.txt", "/docs/%2e%2e/%2e%2e/canary.txt"]
    tricks.each do |path|
      expect(curl("--path-as-is", url(path))).not_to include("CANARY"), path
      expect(raw_request(@server.port, "GET #{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).not_to include("CANARY"), path
    end
  end

  it "serves an app's X-Sendfile answer from Rust, with the static rules and the app's headers" do
    answer = curl("-i", url("/send"))
    expect(answer).to start_with("HTTP/1.1 200")
    expect(answer).to match(/^x-custom: kept\r$/)
    expect(answer).to match(/^content-type: application\/x-thing\r$/)
    expect(answer).not_to match(/^x-sendfile/i)
    expect(answer).to end_with("0123456789")
    expect(curl(url("/send-lower"))).to eq("0123456789")
    expect(curl("-H", "Range: bytes=-3", url("/send-lower"))).to eq("789")
    etag = answer[/^etag: (".+")\r$/, 1]
    expect(curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: #{etag}", url("/send"))).to eq("304")
    expect(curl("-o", "/dev/null", "-w", "%{http_code}", url("/send-missing"))).to eq("404")
    expect(curl(url("/type"))).to eq("X-Sendfile") # so Rack::Sendfile hands file bodies over
  end

  it "uses the folder's <code>.html for errors the server answers itself" do
    answer = raw_request(@server.port, "GET / HTTP/1.1\r\n\r\n") # no Host: 400
    expect(answer).to start_with("HTTP/1.1 400")
    expect(answer).to include("content-type: text/html")
    expect(answer).to end_with("<h1>bad request page</h1>")
  end

  it "uses the folder's 500.html when the app raises or answers garbage, never for the app's own 500" do
    %w[/boom /broken].each do |path|
      res = http_get(@server.port, path)
      expect(res.code).to eq("500"), path
      expect(res["content-type"]).to eq("text/html; charset=utf-8"), path
      expect(res.body).to eq("<h1>we broke it</h1>"), path
    end
    own = http_get(@server.port, "/own-500")
    expect(own.code).to eq("500")
    expect(own.body).to eq("the app's own 500")
    expect(http_get(@server.port, "/hello.txt").body).to eq("hello world")
  end

  it "serves a static-only folder (no app) with its 404.html" do
    File.write(File.join(@root, "404.html"), "<h1>custom 404</h1>")
    static = ServerProcess.new(["-t", "1", "-www", @root], chdir: Dir.tmpdir)
    expect(http_get(static.port, "/hello.txt").body).to eq("hello world")
    missing = http_get(static.port, "/missing")
    expect(missing.code).to eq("404")
    expect(missing.body).to eq("<h1>custom 404</h1>")
  ensure
    static&.stop
  end
end
