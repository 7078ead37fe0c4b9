# frozen_string_literal: true

require "spec_helper"

RSpec.describe "Rack::Lint (Debian rack 2.2) finds nothing to complain about" do
  before(:all) { @server = ServerProcess.new([app_path("lint.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def request(klass, path, body: nil, headers: {})
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10) do |http|
      req = klass.new(path, headers)
      req.body = body if body
      http.request(req)
    end
  end

  {
    Net::HTTP::Get => nil, Net::HTTP::Head => nil, Net::HTTP::Options => nil, Net::HTTP::Delete => nil,
    Net::HTTP::Post => "a=1&b=2", Net::HTTP::Put => "x" * 100_000, Net::HTTP::Patch => "{}"
  }.each do |klass, body|
    method = klass::METHOD
    it "#{method} with#{body ? '' : 'out'} a body, a query string, cookies and repeated headers" do
      raw_headers = { "Cookie" => "a=1; b=2", "Accept" => "text/html" }
      res = request(klass, "/path/x?q=1&r=%20", body: body, headers: raw_headers)
      expect(res.code).to eq("200"), "#{method}: #{res.code} #{res.body}\n#{@server.log}"
      expect(res["X-Info"]).to eq("#{method} /path/x?q=1&r=%20 #{body.to_s.bytesize}")
    end
  end

  it "with repeated headers and a chunked upload (raw socket)" do
    raw = "POST /up HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\nX-A: 1\r\nX-A: 2\r\n" \
          "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    out = raw_request(port, raw)
    expect(out).to start_with("HTTP/1.1 200"), out
    expect(out).to include("POST /up? 3")
  end

  it "with a body streamed by Lint's each wrapper and no Content-Length" do
    res = request(Net::HTTP::Get, "/nolength")
    expect(res.code).to eq("200")
    expect(res.body).to eq("GET /nolength? 0")
  end

  it "with a full rack.hijack" do
    expect(request(Net::HTTP::Get, "/hijack").body).to eq("hi")
  end

  it "logged no Lint error" do
    expect(@server.log).not_to include("Lint")
  end
end
